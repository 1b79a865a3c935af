"""Train on a real capture for a time budget through the one training path (`nerf train`'s
session) and record held-out PSNR and SSIM against training minutes, steps, iterations/s, peak
memory and the render path's seconds per frame. The captures' own entry points (bench.fern,
bench.lego, ...) call `main` with their defaults.

Held-out views are the scene's test split at the loaded resolution unless --eval-downscale
says otherwise (fern: views 0, 8, 16 at 504 x 378; lego: every 8th test view at the curve's
marks, all 200 are for `nerf eval`); evaluation time is not counted as training time. With a
budget the time schedule applies (decay and upsampling follow the clock); add
`--set train.schedule=steps` for the step schedule cut at the budget.
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
from nerfcli.config import to_dict
from nerfcli.metrics import downscale_image, psnr_from_mse, ssim
from nerfcli.models.config import with_values
from nerfcli.render.image import render_view
from nerfcli.training.device import select_device
from nerfcli.training.session import (
    ConfigRequest,
    load_training_scene,
    resolve_config,
    start_run,
)
from nerfcli.training.trainer import StepEvent, Trainer


def held_out_scores(trainer: Trainer, downscale: int) -> tuple[float, float]:
    """Mean PSNR and SSIM over the scene's held-out views."""
    model, scene = trainer.model, trainer.scene
    model.eval()
    psnrs, ssims = [], []
    for view in scene.held_out:
        camera = scene.camera(view)
        out = render_view(
            trainer.render_fn, camera, trainer.cfg.render.chunk, trainer.device, downscale
        )
        gt = downscale_image(torch.from_numpy(scene.images[view]), downscale).to(trainer.device)
        gt = gt[: out.rgb.shape[0], : out.rgb.shape[1]]
        psnrs.append(psnr_from_mse(float(torch.mean((out.rgb - gt) ** 2))))
        ssims.append(ssim(out.rgb, gt))
    model.train()
    return float(np.mean(psnrs)), float(np.mean(ssims))


def _mark(minutes: float, seconds: float, steps: int, scores: tuple[float, float]) -> dict:
    psnr, ssim_value = scores
    return {
        "minutes": minutes,
        "train_seconds": round(seconds, 1),
        "steps": steps,
        "test_psnr": round(psnr, 3),
        "test_ssim": round(ssim_value, 4),
    }


def plot(curve: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot([c["minutes"] for c in curve], [c["test_psnr"] for c in curve], "o-")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def bench_request(folder: Path, args, device: str, data: dict | None) -> ConfigRequest:
    """The ConfigRequest of a bench run: the capture's own defaults where `data` is None (the
    cup and fox benches), the given data flags otherwise (lego: half_res)."""
    return ConfigRequest(
        folder,
        args.config,
        args.model,
        tuple(args.overrides),
        device,
        data=data or {},
        train={"max_minutes": args.minutes},
    )


def main(capture: str = "fern", preset: str | None = "fern", data: dict | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", default=capture, help="a folder of ../shared/data")
    parser.add_argument(
        "--config", default=preset, help="the scene preset (default: what nerf train picks)"
    )
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
    parser.add_argument("--out", type=Path, default=Path(f"bench/results/{capture}"))
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="keep the run (checkpoint) here; default temp"
    )
    args = parser.parse_args()

    device = select_device(args.device)
    folder = require_capture(args.capture)
    cfg = resolve_config(bench_request(folder, args, device.type, data))
    cfg = with_values(cfg, "train", eval_every=0, ckpt_every=0, log_every=100)
    scene = load_training_scene(folder, cfg)
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix=f"bench-{args.capture}-")) / "run"
    trainer = start_run(cfg, scene, run_dir, device).trainer
    marks = [float(m) for m in args.marks.split(",") if float(m) <= args.minutes + 1e-9]
    if not marks or marks[-1] < args.minutes:
        marks.append(args.minutes)
    curve: list[dict] = []
    pending = list(marks)

    def on_event(event) -> None:
        if isinstance(event, StepEvent) and pending and event.train_seconds >= pending[0] * 60:
            mark = pending.pop(0)
            scores = held_out_scores(trainer, args.eval_downscale)
            curve.append(_mark(mark, event.train_seconds, event.step, scores))
            print(
                f"{mark:5.1f} min  step {event.step:6d}  held-out PSNR {scores[0]:.2f} dB, "
                f"SSIM {scores[1]:.3f}",
                flush=True,
            )

    trainer.on_event = on_event
    summary = trainer.run()
    if pending:  # the run ended (iterations or budget done) before the last marks
        scores = held_out_scores(trainer, args.eval_downscale)
        minutes = round(summary.train_seconds / 60, 2)
        curve.append(_mark(minutes, summary.train_seconds, summary.steps, scores))
        print(
            f"end {minutes:.1f} min  step {summary.steps}  held-out PSNR {scores[0]:.2f} dB, "
            f"SSIM {scores[1]:.3f}",
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
            f"{scene.render_path}: {len(poses)} frames in {seconds:.1f}s "
            f"({seconds / len(poses):.2f} s/frame)",
            flush=True,
        )
    doc = {
        "benchmark": f"{args.capture}: held-out PSNR / SSIM against training time",
        "held_out_views": list(scene.held_out),
        "size": [scene.height, scene.width],
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
        "checkpoint": str(summary.checkpoint),
        "config": to_dict(cfg),
    }
    if device.type == "cuda":
        doc["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), doc)
    plot(
        curve,
        args.out.with_suffix(".png"),
        f"{cfg.model.name} on {args.capture} ({scene.width}x{scene.height}), {device}, "
        f"{machine()['cores']} cores",
    )
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
