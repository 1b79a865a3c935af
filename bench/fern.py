"""Train on the real fern capture (factor 8) for a wall-clock budget and record held-out PSNR
against training time, iterations/s, peak memory and spiral-render seconds per frame.

    .venv/bin/python -m bench.fern --minutes 10 --out bench/results/fern_tensorf_cpu
    .venv/bin/python -m bench.fern --model nerf --minutes 10 --eval-downscale 4 \
        --out bench/results/fern_nerf_cpu

Held-out PSNR is measured on views 0, 8, 16 at full resolution (504 x 378) unless
--eval-downscale says otherwise; evaluation time is not counted as training time.
Writes OUT.json and OUT.png (PSNR against minutes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import machine, peak_rss_gb, require_capture, write_json
from nerfcli.config import to_dict, with_values
from nerfcli.metrics import downscale_image, psnr_from_mse
from nerfcli.render.image import render_view
from nerfcli.training.device import select_device
from nerfcli.training.session import load_training_scene, resolve_config, start_run
from nerfcli.training.trainer import StepEvent, Trainer


def held_out_psnr(trainer: Trainer, downscale: int) -> float:
    model, scene = trainer.model, trainer.scene
    model.eval()
    errors = []
    for view in scene.i_test:
        out = render_view(
            trainer.render_fn,
            scene.camera(view),
            trainer.cfg.render.chunk,
            trainer.device,
            downscale,
        )
        gt = downscale_image(torch.from_numpy(scene.images[view]), downscale).to(trainer.device)
        gt = gt[: out.rgb.shape[0], : out.rgb.shape[1]]
        errors.append(float(torch.mean((out.rgb - gt) ** 2)))
    model.train()
    return float(np.mean([psnr_from_mse(e) for e in errors]))


def plot(curve: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot([c["minutes"] for c in curve], [c["test_psnr"] for c in curve], "o-")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("held-out PSNR (dB), views 0, 8, 16")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tensorf")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--marks",
        default="0.5,1,2,3,5,7.5,10,15,20,25,30",
        help="minutes at which to measure held-out PSNR",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--eval-downscale", type=int, default=1)
    parser.add_argument(
        "--render-frames",
        type=int,
        default=120,
        help="spiral frames to render and time (0 to skip)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("bench/results/fern"))
    args = parser.parse_args()

    device = select_device(args.device)
    fern = require_capture("fern")
    cfg = resolve_config(
        fern, "fern", args.model, args.overrides, device.type, train={"max_minutes": args.minutes}
    )
    cfg = with_values(cfg, "train", eval_every=0, ckpt_every=0, log_every=100)
    scene = load_training_scene(fern, cfg)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-fern-")) / "run"
    trainer = start_run(cfg, scene, run_dir, device).trainer
    marks = [float(m) for m in args.marks.split(",") if float(m) <= args.minutes + 1e-9]
    if not marks or marks[-1] < args.minutes:
        marks.append(args.minutes)
    curve: list[dict] = []
    pending = list(marks)

    def on_event(event) -> None:
        if isinstance(event, StepEvent) and pending and event.train_seconds >= pending[0] * 60:
            mark = pending.pop(0)
            value = held_out_psnr(trainer, args.eval_downscale)
            curve.append(
                {
                    "minutes": mark,
                    "train_seconds": round(event.train_seconds, 1),
                    "steps": event.step,
                    "test_psnr": round(value, 3),
                }
            )
            print(
                f"{mark:5.1f} min  step {event.step:6d}  held-out PSNR {value:.2f} dB", flush=True
            )

    trainer.on_event = on_event
    summary = trainer.run()
    if pending:  # the run ended (iterations done) before the last marks
        value = held_out_psnr(trainer, args.eval_downscale)
        curve.append(
            {
                "minutes": round(summary.train_seconds / 60, 2),
                "train_seconds": round(summary.train_seconds, 1),
                "steps": summary.steps,
                "test_psnr": round(value, 3),
            }
        )
        print(
            f"end {summary.train_seconds / 60:.1f} min  step {summary.steps}  held-out PSNR "
            f"{value:.2f} dB",
            flush=True,
        )
    train_peak = peak_rss_gb()
    render = None
    if args.render_frames > 0:
        trainer.model.eval()
        poses = scene.render_poses[: args.render_frames]
        start = time.perf_counter()
        for c2w in poses:
            render_view(trainer.render_fn, scene.path_camera(c2w), cfg.render.chunk, device)
        seconds = time.perf_counter() - start
        render = {
            "frames": len(poses),
            "seconds": round(seconds, 2),
            "seconds_per_frame": round(seconds / len(poses), 3),
            "width": scene.width,
            "height": scene.height,
        }
        print(
            f"spiral: {len(poses)} frames in {seconds:.1f}s ({seconds / len(poses):.2f} s/frame)",
            flush=True,
        )
    doc = {
        "benchmark": "fern factor 8: held-out PSNR (views 0, 8, 16) against training time",
        "machine": machine(),
        "device": str(device),
        "model": cfg.model.name,
        "eval_downscale": args.eval_downscale,
        "curve": curve,
        "steps": summary.steps,
        "train_seconds": round(summary.train_seconds, 1),
        "its": round(summary.steps / max(summary.train_seconds, 1e-9), 3),
        "peak_rss_gb_training": round(train_peak, 3),
        "peak_rss_gb": round(peak_rss_gb(), 3),
        "render": render,
        "config": to_dict(cfg),
    }
    if device.type == "cuda":
        doc["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), doc)
    plot(
        curve,
        args.out.with_suffix(".png"),
        f"{cfg.model.name} on fern (factor 8), {device}, {machine()['cores']} cores",
    )
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
