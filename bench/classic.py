"""Classic NeRF training throughput on fern (factor 8) with the reference fern settings:
1024 rays, 64 + 64 samples, view directions, 8 x 256 MLPs.

Three ways of cutting up the same training step, measured interleaved in one run (one step of
each in turn, `--rounds` times, after a warm-up step each) so that a machine whose speed drifts
affects them alike:
- plain: the whole 1024-ray batch in one forward/backward (65,536 coarse and 131,072 fine
  points per matrix product);
- netchunk: what the reference nerf-pytorch does (its network runs on chunks of 65,536
  points: here 512-ray chunks, 32,768 coarse and 65,536 fine points);
- ours: the classic model's device profile (CPU: gradients accumulated over 32-ray chunks, so
  activations stay in cache; GPU: bf16 autocast and TF32).
The ratio reported is ours against the faster of plain and netchunk. design.md also quotes
nerf-pytorch itself at 0.133 it/s on the team machine of that time; printed for reference.

    .venv/bin/python -m bench.classic --rounds 4 --json-out bench/results/classic.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from bench.common import machine, require_capture, write_json
from nerfcli.models.config import build_config, with_values
from nerfcli.models.registry import model_profile
from nerfcli.training.device import select_device
from nerfcli.training.session import load_training_scene, start_run
from nerfcli.training.trainer import Trainer

REFERENCE_ITS = 0.133  # nerf-pytorch, fern settings, the 2-core team machine of design.md


def variants(device: torch.device) -> dict[str, list[str]]:
    profile = model_profile("nerf", device.type).get("train", {})
    ours = [f"train.{key}={value}" for key, value in profile.items()]
    if device.type == "cuda":
        return {"plain": ["train.amp=false"], "ours": ["train.amp=true", *ours]}
    return {
        "plain": ["train.grad_chunk_rays=0"],
        "netchunk": ["train.grad_chunk_rays=512"],
        "ours": ours,
    }


def make_trainer(scene, device, overrides: list[str]) -> Trainer:
    cfg = build_config(
        "fern",
        [
            "model.name=nerf",
            "train.eval_every=0",
            "train.ckpt_every=0",
            "train.log_every=1000000",
            "train.iters=1",
            *overrides,
        ],
    )
    run_dir = Path(tempfile.mkdtemp(prefix="bench-classic-")) / "run"
    trainer = start_run(cfg, scene, run_dir, device).trainer
    trainer.run()  # the warm-up step: allocators, thread pools
    return trainer


def one_step(trainer: Trainer) -> float:
    """Run one more training step; its seconds (the trainer's own step timer)."""
    before = trainer.train_seconds
    trainer.cfg = with_values(trainer.cfg, "train", iters=trainer.step + 1)
    trainer.run()
    return trainer.train_seconds - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    device = select_device(args.device)
    scene = load_training_scene(require_capture("fern"), build_config("fern"))
    trainers = {name: make_trainer(scene, device, o) for name, o in variants(device).items()}
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for round_ in range(args.rounds):
        for name, trainer in trainers.items():
            seconds[name].append(one_step(trainer))
        row = "  ".join(f"{name} {s[-1]:.2f} s" for name, s in seconds.items())
        print(f"round {round_ + 1}: {row}", flush=True)
    results = {}
    for name, values in seconds.items():
        median = statistics.median(values)
        results[name] = {"its": 1.0 / median, "seconds_per_iteration": median, "steps": values}
        print(f"{name:9s} {1 / median:.4f} it/s  ({median:.2f} s/it, median)", flush=True)
    baseline = max((r["its"] for n, r in results.items() if n != "ours"), default=None)
    doc = {
        "benchmark": "classic NeRF training throughput, fern factor 8, 1024 rays, 64+64 samples",
        "machine": machine(),
        "device": str(device),
        "rounds": args.rounds,
        "results": results,
        "ours_vs_baseline": results["ours"]["its"] / baseline,
        "ours_vs_design_md_0.133": results["ours"]["its"] / REFERENCE_ITS,
    }
    print(
        f"ours / the faster reference-style path = {doc['ours_vs_baseline']:.2f}x; "
        f"ours / 0.133 it/s (design.md's machine) = {doc['ours_vs_design_md_0.133']:.2f}x"
    )
    if args.json_out:
        write_json(args.json_out, doc)


if __name__ == "__main__":
    main()
