"""`nerf demo`: the whole loop on the project's own generated scene, in a few minutes.

Generates the scene, trains the default model, scores the held-out views and renders the
spiral video, then prints where everything went.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import typer

from nerfcli.cli.common import (
    DEVICES,
    MODEL_NAMES,
    choice,
    console,
    info,
    make_progress,
    q,
    stdout_json,
)
from nerfcli.errors import NerfError

EPILOG = "Example: [bold]nerf demo --out runs/demo --json[/]  (what `make demo` runs)"

MARKER = ".nerf-demo"

# Training length of the demo per (model, device type): the 160 x 120 demo scene needs far
# fewer steps than a real capture. Anything not listed uses the model's own profile.
DEMO_TRAIN: dict[tuple[str, str], dict] = {
    ("tensorf", "cpu"): {"iters": 600, "lr_decay_steps": 600},
    ("nerf", "cpu"): {"iters": 2000},
}


def _prepare_out(out: Path) -> None:
    """A previous demo in `out` is replaced; anything else there is never touched."""
    if out.exists():
        if not (out / MARKER).is_file():
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            else:
                raise NerfError(
                    f"{out}: folder exists and is not a previous demo; choose another --out"
                )
        else:
            shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("created by `nerf demo`; rerunning the demo replaces this folder\n")


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Folder for everything."),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Model: tensorf (default) or nerf.",
        callback=choice(*MODEL_NAMES),
    ),
    iters: int = typer.Option(
        None, "--iters", min=1, help="Training steps (default: the demo profile)."
    ),
    frames: int = typer.Option(60, "--frames", min=1, help="Frames of the spiral video."),
    device: str = typer.Option(
        "auto", "--device", help="auto, cpu, cuda or mps.", callback=choice(*DEVICES)
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the scene and of training."),
    json_out: bool = typer.Option(False, "--json", help="Print {psnr, ssim, seconds, ...}."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or messages."),
) -> None:
    """Generate a scene, train on it, evaluate the held-out views and render the spiral."""
    from nerfcli.evaluation.evaluate import evaluate
    from nerfcli.fsutil import atomic_write
    from nerfcli.training.checkpoint import load_checkpoint
    from nerfcli.training.device import select_device

    start = time.perf_counter()
    dev = select_device(device)
    _prepare_out(out)
    scene_dir = _generate_scene(out / "scene", seed, quiet)
    cfg, scene, summary = _train(scene_dir, out / "run", model, iters, seed, dev, quiet)
    ckpt = load_checkpoint(summary.checkpoint)
    with make_progress(quiet) as progress:
        task = progress.add_task("eval", total=len(scene.held_out))
        report = evaluate(ckpt, scene, out / "eval", dev, on_view=lambda s: progress.advance(task))
    video = _render_spiral(ckpt, out / "video.mp4", frames, dev, quiet)
    seconds = time.perf_counter() - start
    result = {
        "psnr": report.psnr,
        "ssim": report.ssim,
        "depth_abs_rel": report.depth_abs_rel,
        "seconds": round(seconds, 2),
        "train_seconds": round(summary.train_seconds, 2),
        "steps": summary.steps,
        "model": cfg.model.name,
        "device": str(dev),
        "checkpoint": str(summary.checkpoint),
        "video": str(video),
        "scene": str(scene_dir),
        "eval_dir": report.out_dir,
    }
    with atomic_write(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2), encoding="utf-8")
    if json_out:
        stdout_json(result)
    if not quiet:
        console.print(
            f"[green]demo done[/] in {seconds:.0f}s: held-out PSNR [bold]{report.psnr:.2f} dB[/], "
            f"SSIM {report.ssim:.3f}\n  checkpoint {q(summary.checkpoint)}\n  video      {q(video)}\n"
            f"  eval       {q(report.out_dir)}\n  metrics    {q(out / 'metrics.json')}"
        )


def _generate_scene(scene_dir: Path, seed: int, quiet: bool) -> Path:
    from nerfcli.data.synthetic import make_scene

    with make_progress(quiet) as progress:
        task = progress.add_task("generate scene", total=None)
        synth = make_scene(
            scene_dir,
            preset="demo",
            seed=seed,
            on_view=lambda done, total: progress.update(task, completed=done, total=total),
        )
    info(
        f"[bold]scene[/] {synth.num_views} views {synth.width} x {synth.height} (W x H) -> {q(scene_dir)}",
        quiet,
    )
    return scene_dir


def _train(scene_dir: Path, run_dir: Path, model, iters, seed: int, dev, quiet: bool):
    """The demo's run through the one training path: (config, scene, summary)."""
    from nerfcli.models.config import with_values
    from nerfcli.training.session import (
        ConfigRequest,
        load_training_scene,
        resolve_config,
        start_run,
    )
    from nerfcli.training.trainer import StepEvent

    request = ConfigRequest(scene_dir, "synthetic", model, device=dev.type, train={"seed": seed})
    cfg = resolve_config(request)
    cfg = with_values(cfg, "train", **DEMO_TRAIN.get((cfg.model.name, dev.type), {}))
    cfg = with_values(cfg, "train", iters=iters, eval_every=0)
    scene = load_training_scene(scene_dir, cfg)
    with make_progress(quiet) as progress:
        task = progress.add_task(f"train {cfg.model.name}", total=cfg.train.iters)
        run = start_run(
            cfg,
            scene,
            run_dir,
            dev,
            on_event=lambda e: (
                progress.update(task, completed=e.step) if isinstance(e, StepEvent) else None
            ),
        )
        summary = run.trainer.run()
    return run.cfg, scene, summary


def _render_spiral(ckpt, video: Path, frames: int, dev, quiet: bool) -> Path:
    from nerfcli.evaluation.video import VideoWriter, camera_path, render_frames
    from nerfcli.training.checkpoint import restore_model

    poses = camera_path(ckpt.scene, "spiral", frames)
    model = restore_model(ckpt, dev)
    writer = VideoWriter(video, 30)
    try:
        with make_progress(quiet) as progress:
            task = progress.add_task("render spiral", total=len(poses))
            for rgb, _ in render_frames(model, ckpt.scene, poses, ckpt.config.render.chunk, dev):
                writer.append(rgb)
                progress.advance(task)
        return writer.close()
    except BaseException:
        writer.abort()
        raise
