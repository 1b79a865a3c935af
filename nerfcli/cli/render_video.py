"""`nerf render-video CKPT`: render a camera path (spiral, circle or a file) to .mp4 or .gif;
under torchrun the frames are split across the processes and rank 0 writes the video."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
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
    kind, path_file = _path_kind(spiral, circle, orbit, path)
    request = RenderVideoRequest(
        checkpoint=checkpoint,
        path_kind=kind,
        path_file=path_file,
        frames=frames,
        fps=fps,
        downscale=downscale,
        out=out,
        depth=depth,
        poses_out=poses_out,
        device=device,
        force=force,
        json_out=json_out,
        quiet=quiet,
    )
    run_render_video(request)


@dataclass(frozen=True)
class RenderVideoRequest:
    """What `nerf render-video` asks of the video, built once from its parameters.

    checkpoint  checkpoint file or run folder
    path_kind   spiral, circle, orbit, interpolate, file or default (the scene's own)
    path_file   the camera path file when path_kind is "file"
    frames      frames of a generated path; None: the scene's own count (or 120)
    fps         frames per second; None: the path file's, else 30
    downscale   render at 1/K resolution
    out         the .mp4 or .gif; None: <run>/video_<path>.mp4
    depth       also write the disparity video <out>_depth
    poses_out   save the camera path as .npy [F, 3, 4]
    device      auto, cpu, cuda or mps
    force       overwrite existing outputs
    json_out    print a JSON summary on stdout
    quiet       no progress bar
    """

    checkpoint: Path
    path_kind: str = "default"
    path_file: Path | None = None
    frames: int | None = None
    fps: int | None = None
    downscale: int = 1
    out: Path | None = None
    depth: bool = False
    poses_out: Path | None = None
    device: str = "auto"
    force: bool = False
    json_out: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class _CameraPath:
    """The poses to render [F, 3, 4], their fps, the name in the default file name, and the
    camera of frame k where the path file sets its own (else None: the scene's)."""

    poses: np.ndarray  # [F, 3, 4]
    fps: int
    name: str
    cameras: Callable[[int], Any] | None


def run_render_video(request: RenderVideoRequest) -> None:
    """Render the request's path; rank 0 writes the video(s) and prints the summary."""
    import time

    from nerfcli.evaluation.video import render_frames
    from nerfcli.training import distributed
    from nerfcli.training.checkpoint import load_checkpoint, restore_model

    dev, ranks = distributed.join(request.device)
    quiet = request.quiet or not ranks.is_main
    json_out = request.json_out and ranks.is_main
    ckpt = load_checkpoint(request.checkpoint, map_location="cpu")
    meta = ckpt.scene
    out = request.out
    if out is not None and out.suffix.lower() not in (".mp4", ".gif"):
        raise UsageError(f"--out {out}: a video must end in .mp4 or .gif")
    mp4 = out is None or out.suffix.lower() == ".mp4"
    check_downscale(request.downscale, meta.height, meta.width, minimum=2 if mp4 else 1)
    path = _camera_path(request, meta, quiet)
    if out is None:
        out = ckpt.path.parent / f"video_{path.name}.mp4"
    depth_out = out.with_name(f"{out.stem}_depth{out.suffix}") if request.depth else None
    for target in [out, depth_out, request.poses_out]:
        if target is not None:
            check_writable_target(target, request.force)
    model = restore_model(ckpt, dev)
    start = time.perf_counter()
    frames = render_frames(
        model,
        meta,
        path.poses,
        ckpt.config.render.chunk,
        dev,
        request.downscale,
        ranks,
        path.cameras,
    )
    first_camera = (path.cameras or (lambda k: meta.path_camera(path.poses[k])))(0)
    if not ranks.is_main:
        for _ in frames:  # render this rank's frames; rank 0 writes them
            pass
        return
    disparities = _write_frames(out, path.fps, frames, len(path.poses), request.depth, quiet)
    seconds = time.perf_counter() - start
    _write_extras(request, path, disparities, depth_out)
    result = {
        "video": str(out),
        "depth_video": str(depth_out) if depth_out else None,
        "poses": str(request.poses_out) if request.poses_out else None,
        "path": path.name,
        "frames": int(len(path.poses)),
        "fps": path.fps,
        "width": video_size(first_camera.width, request.downscale, out),  # what the file holds
        "height": video_size(first_camera.height, request.downscale, out),
        "seconds": round(seconds, 3),
        "seconds_per_frame": round(seconds / max(len(path.poses), 1), 4),
        "checkpoint": str(ckpt.path),
        "processes": ranks.world,
    }
    if json_out:
        stdout_json(result)
    info(f"[green]wrote[/] {q(out)} ({len(path.poses)} frames, {seconds:.1f}s)", quiet)


def _camera_path(request: RenderVideoRequest, meta, quiet: bool) -> _CameraPath:
    """The request's camera path on the checkpoint's scene: a path file as written (its frames
    and fps, its warnings printed), else the generated or stored path of request.frames."""
    from nerfcli.evaluation.video import camera_path

    kind = request.path_kind
    name = {"file": "path", "default": meta.render_path}.get(kind, kind)
    if kind != "file":
        frames = request.frames
        if frames is None:  # the scene's own path as stored (inspect-poses --path-out, nerf view)
            frames = len(meta.render_poses) if kind == "default" else DEFAULT_FRAMES
        poses = camera_path(meta, kind, frames, request.path_file)
        return _CameraPath(poses, request.fps or 30, name, None)
    from nerfcli.evaluation.camera_path import read_path_file

    if request.frames is not None:
        info(
            f"[yellow]warning:[/] --frames {request.frames} is ignored: the path file sets the "
            "frames",
            quiet,
        )
    loaded_path = read_path_file(request.path_file, meta)
    for warning in loaded_path.warnings:
        info(f"[yellow]warning:[/] {q(warning)}", quiet)

    def path_cameras(index: int):
        return loaded_path.camera(meta, index)

    fps = request.fps or loaded_path.fps or 30
    return _CameraPath(loaded_path.poses, fps, name, path_cameras)


def _write_extras(
    request: RenderVideoRequest, path: _CameraPath, disparities: list, depth_out: Path | None
) -> None:
    """The disparity video and the poses file, where asked."""
    from nerfcli.cli.common import atomic_path
    from nerfcli.evaluation.video import colorize_disparity, write_video

    if depth_out is not None:
        write_video(depth_out, colorize_disparity(disparities), path.fps)
    if request.poses_out is not None:
        with atomic_path(request.poses_out, suffix=".npy") as tmp:
            np.save(tmp, path.poses.astype(np.float32))


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
