"""`nerf render-video CKPT`: render a camera path (spiral, circle or a file) to .mp4 or .gif;
under torchrun the frames are split across the processes and rank 0 writes the video."""

from __future__ import annotations

from pathlib import Path

import typer

from nerfcli.cli.common import (
    DEVICES,
    check_downscale,
    check_writable_target,
    choice,
    info,
    make_progress,
    q,
    stdout_json,
)
from nerfcli.errors import ConfigError, UsageError

EPILOG = (
    "Example: [bold]nerf render-video runs/fern/ckpt.pt --spiral --out fern.mp4[/]  "
    "(quick preview: [bold]--downscale 4 --frames 30[/]; depth too: [bold]--depth[/]; on 2 GPUs: "
    "[bold]torchrun --standalone --nproc-per-node 2 -m nerfcli render-video CKPT[/])"
)


DEFAULT_FRAMES = 120


def video_size(pixels: int, downscale: int, out: Path) -> int:
    """Frame width or height in the written file: an .mp4 (yuv420p) drops an odd last pixel."""
    size = pixels // downscale
    return size // 2 * 2 if out.suffix.lower() == ".mp4" else size


def render_video(
    checkpoint: Path = typer.Argument(..., help="Checkpoint file (or a run folder with ckpt.pt)."),
    spiral: bool = typer.Option(False, "--spiral", help="LLFF spiral path (forward-facing)."),
    circle: bool = typer.Option(False, "--circle", help="Circle path (spherified captures)."),
    orbit: bool = typer.Option(False, "--orbit", help="Orbit fitted to the cameras (surround)."),
    path: str = typer.Option(
        None,
        "--path",
        help="'interpolate' (through the training cameras in order) or a camera path file: "
        "camera_path.json (from `nerf view` or nerfstudio), a transforms.json (its frames in "
        "order) or .npy [F, 3, 4].",
    ),
    frames: int = typer.Option(
        None,
        "--frames",
        min=1,
        help="Frames of the path (default: the scene's own path as stored, as inspect-poses "
        "--path-out writes it: Blender 40, others 120; 120 for another generated path; a --path "
        "file has its own).",
        show_default=False,
    ),
    fps: int = typer.Option(
        None, "--fps", min=1, help="Frames per second (default 30, or the path file's)."
    ),
    downscale: int = typer.Option(1, "--downscale", min=1, help="Render at 1/K resolution."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Output .mp4 or .gif (default <run>/video_<path>.mp4)."
    ),
    depth: bool = typer.Option(
        False, "--depth", help="Also write a colour-mapped disparity video (<out>_depth)."
    ),
    poses_out: Path = typer.Option(
        None, "--poses-out", help="Save the camera path used as .npy [F, 3, 4]."
    ),
    device: str = typer.Option(
        "auto", "--device", help="auto, cpu, cuda or mps.", callback=choice(*DEVICES)
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Render a camera path (spiral, orbit, circle, spherical, or a file) to a video."""
    import time

    import numpy as np

    from nerfcli.cli.common import atomic_path
    from nerfcli.evaluation.video import camera_path, colorize_disparity, render_frames
    from nerfcli.training import distributed
    from nerfcli.training.checkpoint import load_checkpoint, restore_model

    frames_asked = frames
    kind, path = _path_kind(spiral, circle, orbit, path)
    dev, ranks = distributed.join(device)
    quiet = quiet or not ranks.is_main
    json_out = json_out and ranks.is_main
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    meta = ckpt.scene
    if frames is None:  # the scene's own path as stored (inspect-poses --path-out, nerf view)
        frames = len(meta.render_poses) if kind == "default" else DEFAULT_FRAMES
    if out is not None and out.suffix.lower() not in (".mp4", ".gif"):
        raise UsageError(f"--out {out}: a video must end in .mp4 or .gif")
    mp4 = out is None or out.suffix.lower() == ".mp4"
    check_downscale(downscale, meta.height, meta.width, minimum=2 if mp4 else 1)
    if kind == "file" and frames_asked is not None:
        info(
            f"[yellow]warning:[/] --frames {frames} is ignored: the path file sets the frames",
            quiet,
        )
    path_cameras = None
    if kind == "file":
        from nerfcli.evaluation.camera_path import read_path_file

        loaded_path = read_path_file(path, meta)
        for warning in loaded_path.warnings:
            info(f"[yellow]warning:[/] {q(warning)}", quiet)
        poses, fps = loaded_path.poses, fps or loaded_path.fps

        def path_cameras(index: int):
            return loaded_path.camera(meta, index)
    else:
        poses = camera_path(meta, kind, frames, path)
    fps = fps or 30
    name = {"file": "path", "default": meta.render_path}.get(kind, kind)
    if out is None:
        out = ckpt.path.parent / f"video_{name}.mp4"
    depth_out = out.with_name(f"{out.stem}_depth{out.suffix}") if depth else None
    for target in [out, depth_out, poses_out]:
        if target is not None:
            check_writable_target(target, force)
    model = restore_model(ckpt, dev)
    start = time.perf_counter()
    frames = render_frames(
        model, meta, poses, ckpt.config.render.chunk, dev, downscale, ranks, path_cameras
    )
    first_camera = (path_cameras or (lambda k: meta.path_camera(poses[k])))(0)
    if not ranks.is_main:
        for _ in frames:  # render this rank's frames; rank 0 writes them
            pass
        return
    disparities = _write_frames(out, fps, frames, len(poses), depth, quiet)
    seconds = time.perf_counter() - start
    if depth_out is not None:
        from nerfcli.evaluation.video import write_video

        write_video(depth_out, colorize_disparity(disparities), fps)
    if poses_out is not None:
        with atomic_path(poses_out, suffix=".npy") as tmp:
            np.save(tmp, poses.astype(np.float32))
    result = {
        "video": str(out),
        "depth_video": str(depth_out) if depth_out else None,
        "poses": str(poses_out) if poses_out else None,
        "path": name,
        "frames": int(len(poses)),
        "fps": fps,
        "width": video_size(first_camera.width, downscale, out),  # what the file holds
        "height": video_size(first_camera.height, downscale, out),
        "seconds": round(seconds, 3),
        "seconds_per_frame": round(seconds / max(len(poses), 1), 4),
        "checkpoint": str(ckpt.path),
        "processes": ranks.world,
    }
    if json_out:
        stdout_json(result)
    info(f"[green]wrote[/] {q(out)} ({len(poses)} frames, {seconds:.1f}s)", quiet)


def _path_kind(spiral: bool, circle: bool, orbit: bool, path: str | None):
    """(kind, path file or None) of the camera-path flags: spiral, circle, orbit,
    interpolate, file or default (the scene's own)."""
    if sum([spiral, circle, orbit, path is not None]) > 1:
        raise ConfigError("choose one of --spiral, --circle, --orbit and --path")
    kind = "spiral" if spiral else "circle" if circle else "orbit" if orbit else "default"
    if path == "interpolate":
        return "interpolate", None
    if path is not None:
        return "file", Path(path)
    return kind, None


def _write_frames(out: Path, fps: int, frames, total: int, depth: bool, quiet: bool) -> list:
    """Write the rendered (rgb, disparity) frames to `out` (nothing left half-written on an
    error); the disparities when `depth`."""
    from nerfcli.evaluation.video import VideoWriter

    writer = VideoWriter(out, fps)
    disparities = []
    try:
        with make_progress(quiet) as progress:
            task = progress.add_task("render", total=total)
            for rgb, disparity in frames:
                writer.append(rgb)
                if depth:
                    disparities.append(disparity)
                progress.advance(task)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return disparities
