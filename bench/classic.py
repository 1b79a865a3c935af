"""Classic NeRF training throughput on fern (factor 8) with the reference fern settings:
1024 rays, 64 + 64 samples, view directions, 8 x 256 MLPs.

Measures side by side, in one run, the plain path (whole batch in one forward/backward, the
way the reference does it) and ours (gradients accumulated over ray chunks so activations stay
in cache). The reference nerf-pytorch runs these settings at 0.133 it/s on the 2-core CPU of
the team machine (design.md); ratios against that figure are printed too.

    .venv/bin/python bench/classic.py --steps 4 --json-out bench/results/classic.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.common import machine, require_capture, write_json
from nerfcli.config import build_config
from nerfcli.llff import load_scene
from nerfcli.train import Trainer, select_device

REFERENCE_ITS = 0.133  # nerf-pytorch, fern settings, this 2-core CPU (design.md)


def measure(scene, device, steps: int, overrides: list[str]) -> float:
    cfg = build_config(
        "fern",
        [
            "model.name=nerf",
            "train.eval_every=0",
            "train.ckpt_every=0",
            "train.log_every=1000",
            f"train.iters={steps + 1}",
            *overrides,
        ],
    )
    times: list[float] = []
    trainer = Trainer(cfg, scene, tempfile.mkdtemp(prefix="bench-classic-"), device)
    last = [time.perf_counter()]

    def on_event(event) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    trainer.on_event = on_event
    trainer.run()
    timed = times[1:]  # the first step warms up allocators
    return len(timed) / sum(timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk", type=int, default=256, help="ray chunk of our path")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    device = select_device(args.device)
    scene = load_scene(require_capture("fern"), factor=8)
    variants = {"plain": [], "ours": [f"train.grad_chunk_rays={args.chunk}"]}
    if device.type == "cuda":
        variants = {"plain": ["train.amp=false"], "ours": ["train.amp=true"]}
    results = {}
    for name, overrides in variants.items():
        its = measure(scene, device, args.steps, overrides)
        results[name] = {"its": its, "seconds_per_iteration": 1.0 / its}
        print(f"{name:6s} {its:.4f} it/s  ({1 / its:.2f} s/it)", flush=True)
    doc = {
        "benchmark": "classic NeRF training throughput, fern factor 8, 1024 rays, 64+64 samples",
        "machine": machine(),
        "device": str(device),
        "steps": args.steps,
        "results": results,
        "ours_vs_plain": results["ours"]["its"] / results["plain"]["its"],
        "ours_vs_reference_0.133": results["ours"]["its"] / REFERENCE_ITS,
    }
    print(
        f"ours / plain = {doc['ours_vs_plain']:.2f}x; ours / reference(0.133 it/s) = "
        f"{doc['ours_vs_reference_0.133']:.2f}x"
    )
    if args.json_out:
        write_json(args.json_out, doc)


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
