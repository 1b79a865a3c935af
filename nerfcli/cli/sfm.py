"""`nerf sfm SCENE`: photos (or a video) -> COLMAP model, poses_bounds.npy, transforms.json."""

from __future__ import annotations

from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from nerfcli.cli.common import positive
from nerfcli.data.sfm.colmap import CAMERA_MODEL_CHOICES  # no pycolmap import: a plain tuple

EPILOG = (
    "Example: with 20 to 150 overlapping photos in mycup/images/,\n\n"
    "  nerf sfm mycup --prune-images\n\n"
    "runs SIFT, matching (every pair; for photos named in capture order, loop closures that "
    "disagree with the order are dropped) and COLMAP's incremental mapper in-process (pycolmap, no "
    "COLMAP install: pip install 'nerfcli\\[sfm]'), writes mycup/sparse/0/ and "
    "mycup/poses_bounds.npy, and moves photos that could not be registered into "
    "mycup/images_unregistered/. Then: nerf inspect-poses mycup, and nerf train mycup. "
    "From a video: nerf sfm mycup --video clip.mp4 --fps 2 --sharpest "
    "(frames go to mycup/images/, matched sequentially)."
)

STAGE_LABELS = {
    "frames": "video frames",
    "check": "check photos",
    "extract": "SIFT features",
    "match": "matching",
    "map": "mapping (registered)",
    "remap": "mapping again: the pose checks failed (registered)",
    "write": "write",
}


class Matcher(str, Enum):
    exhaustive = "exhaustive"
    sequential = "sequential"
    sequence = "sequence"


CameraModel = Enum("CameraModel", {name: name for name in CAMERA_MODEL_CHOICES}, type=str)


class _StageProgress:
    """One rich progress row per stage; a new stage completes the rows before it."""

    def __init__(self, progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage not in self.tasks:
            for task in self.tasks.values():
                row = self.progress.tasks[task]
                self.progress.update(task, total=row.total or 1, completed=row.total or 1)
            self.tasks[stage] = self.progress.add_task(STAGE_LABELS.get(stage, stage), total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def sfm(
    scene: Path = typer.Argument(
        ...,
        metavar="SCENE",
        help="Scene folder: photos in SCENE/images/ (or --images); results are written here.",
        show_default=False,
    ),
    images: Optional[Path] = typer.Option(
        None, "--images", help="Photo folder. Default: SCENE/images/.", show_default=False
    ),
    video: Optional[Path] = typer.Option(
        None,
        "--video",
        help="Extract frames from this video into SCENE/images/ first (sequential matching).",
        show_default=False,
    ),
    fps: float = typer.Option(
        2.0, "--fps", help="With --video: frames kept per second.", callback=positive
    ),
    sharpest: bool = typer.Option(
        False,
        "--sharpest",
        help="With --video: keep the sharpest frame of each 1/fps window (variance of the "
        "Laplacian) instead of the first.",
    ),
    matcher: Optional[Matcher] = typer.Option(
        None,
        "--matcher",
        help="exhaustive (every pair), sequential (neighbours in name order), or sequence (every "
        "pair, then loop closures that disagree with the rotations chained along the capture "
        "order are dropped: symmetric scenes). Default: sequence up to 150 photos named in "
        "capture order (1.jpg, 2.jpg, ...), exhaustive for other names, sequential for more "
        "photos and for --video.",
        show_default=False,
    ),
    camera_model: CameraModel = typer.Option(
        CameraModel("SIMPLE_PINHOLE"),
        "--camera-model",
        help="COLMAP camera model. OPENCV gets one camera per photo (with distortion); the "
        "others one shared camera, as LLFF's poses_bounds.npy stores.",
    ),
    max_image_size: Optional[int] = typer.Option(
        None,
        "--max-image-size",
        min=64,
        help="Extract features on copies downscaled to this many pixels on the long side "
        "(faster on large photos). Default: COLMAP's 3200.",
        show_default=False,
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="CPU threads. Default: all cores.", show_default=False
    ),
    transforms: bool = typer.Option(
        False, "--transforms", help="Also write a nerfstudio-style SCENE/transforms.json."
    ),
    prune_images: bool = typer.Option(
        False,
        "--prune-images",
        help="Move photos that were not registered into images_unregistered/ beside the photo "
        "folder, so the folder matches the poses. Nothing is deleted.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing sparse/0, poses_bounds.npy, database."
    ),
    accept_suspect: bool = typer.Option(
        False,
        "--accept-suspect",
        help="Write the result even when the pose checks fail (photos named in capture order "
        "whose poses turn away and back or look nearly opposite, cameras upside down); by "
        "default such a run exits 1 and writes nothing.",
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print one JSON summary on stdout instead of the table."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Camera poses from photos or a video, in one command: SIFT, matching and incremental
    mapping with pycolmap (no COLMAP install), written as COLMAP and LLFF files."""
    from nerfcli.cli.common import make_progress, stdout_json
    from nerfcli.data.sfm.pipeline import SfmOptions, run_sfm

    options = SfmOptions(
        images=images,
        video=video,
        fps=fps,
        sharpest=sharpest,
        matcher=None if matcher is None else matcher.value,
        camera_model=camera_model.value,
        max_image_size=max_image_size,
        threads=threads,
        transforms=transforms,
        prune_images=prune_images,
        force=force,
        accept_suspect=accept_suspect,
    )
    check_inputs(scene, images, video)  # before "needs pycolmap": the input's own problem first
    with make_progress(quiet) as progress:  # stderr: the JSON on stdout stays clean
        result = run_sfm(scene, options, _StageProgress(progress))
    if json_output:
        stdout_json(asdict(result))
        return
    if not quiet:
        _print_summary(result)


def quality_rows(quality: dict) -> list[tuple[str, str]]:
    """The summary rows of a pose_checks report (its to_json form)."""
    sequence, upright, tracks = quality["sequence"], quality["upright"], quality["tracks"]
    if sequence["ordered"]:
        failed = sequence["detours"] or sequence["reversals"]
        text = (
            f"{'FAILED' if failed else 'ok'}: consecutive views {sequence['median_step_deg']:.1f} "
            f"deg apart (median), {len(sequence['jumps'])} step(s) over "
            f"{sequence['threshold_deg']:.1f} deg"
        )
        if sequence["detours"]:
            text += "; turned away and back: " + ", ".join(
                f"{'/'.join(d['photos'])} ({d['turned_deg']:.0f} deg)" for d in sequence["detours"]
            )
        if sequence["reversals"]:
            text += "; nearly opposite: " + ", ".join(
                f"{j['first']} -> {j['second']} ({j['degrees']:.0f} deg)"
                for j in sequence["reversals"]
            )
    else:
        text = "not checked: " + sequence["reason"]
    rows = [("sequence", text)]
    turned = upright["turned_over"]
    rows.append(
        (
            "upright",
            f"{'FAILED' if turned else 'ok'}: up vectors {upright['median_deg']:.1f} deg from "
            f"their mean (median), at most {upright['max_deg']:.1f}"
            + (f"; upside down: {', '.join(turned)}" if turned else ""),
        )
    )
    if tracks is not None:
        text = (
            f"{tracks['mean_length']:.2f} photos per point (mean), at most {tracks['max_length']}"
        )
        if tracks["max_far_fraction"] is not None:
            most = tracks["most_far"][0]
            text += (
                f"; matches from photos over {tracks['far_apart']} apart: "
                f"{100 * tracks['median_far_fraction']:.0f}% (median), at most "
                f"{100 * most['fraction']:.0f}% ({most['name']})"
            )
        rows.append(("tracks", text))
    return rows


def check_inputs(scene: Path, images: Path | None, video: Path | None) -> None:
    """The folders and files the user named exist (checked before pycolmap is imported, so a
    missing folder is named even where pycolmap is not installed)."""
    from nerfcli.errors import DataError

    if video is not None:
        if not video.is_file():
            raise DataError(f"{video}: no such video file (--video)")
        return
    if not scene.is_dir():
        raise DataError(
            f"{scene}: no such folder; pass the scene folder that holds images/ (with --images, "
            "create it first: the results are written there)"
        )
    folder = images if images is not None else scene / "images"
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no such folder; put the photos in SCENE/images/, or pass --images DIR "
            "or --video clip.mp4"
        )


def _print_summary(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    from nerfcli.cli.common import console
    from nerfcli.data.sfm.inputs import listing

    table = Table(title="sfm", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("photos", escape(f"{result.images_dir} ({result.num_images})"))
    percent = 100 * result.registered_fraction
    table.add_row("registered", f"{result.num_registered} / {result.num_images} ({percent:.0f}%)")
    if result.unregistered_images:
        where = f" -> moved to {result.moved_to}" if result.moved_to else ""
        table.add_row("unregistered", escape(listing(result.unregistered_images) + where))
    if len(result.models) > 1:
        sizes = ", ".join(str(m.num_images) for m in result.models)
        table.add_row("models", f"{len(result.models)} ({sizes} photos); wrote the largest")
    cameras = "one shared" if result.num_cameras == 1 else f"{result.num_cameras}, one per photo"
    table.add_row("camera", f"{result.camera_model}, {cameras}")
    table.add_row("image size", f"{result.width} x {result.height}, focal {result.focal:.6g} px")
    table.add_row("3D points", str(result.num_points))
    table.add_row("reprojection", f"{result.mean_reprojection_error:.3f} px (mean)")
    table.add_row("matcher", result.matcher)
    if result.sequence_matching is not None:
        chain = result.sequence_matching
        table.add_row(
            "loop pairs",
            f"{chain['kept_loop_pairs']} kept (agree within {chain['worst_kept_deg']:.1f} deg), "
            f"{chain['dropped_pairs']} dropped (disagree with the chain), "
            f"{chain['unchecked_pairs']} unchecked; {chain['stretches']} stretch(es)",
        )
    if result.quality is not None:
        for what, value in quality_rows(result.quality):
            table.add_row(what, escape(value))
    stages = ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items() if k != "total")
    table.add_row("seconds", f"{result.seconds['total']:.1f} ({stages})")
    for key, path in result.written.items():
        table.add_row(key, escape(path))
    console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True, markup=True)
    scene = escape(result.scene)
    console.print(f"next: nerf inspect-poses {scene}, then nerf train {scene}", soft_wrap=True)
