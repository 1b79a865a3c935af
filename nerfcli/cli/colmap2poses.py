"""`nerf colmap2poses`: a COLMAP sparse model -> LLFF poses_bounds.npy, as LLFF's imgs2poses."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import typer

EPILOG = (
    "Example: after COLMAP's mapper wrote mycup/sparse/0/,\n\n"
    "  nerf colmap2poses mycup --prune-images\n\n"
    "writes mycup/poses_bounds.npy (one row per registered photo, in name order) and moves "
    "photos COLMAP could not register into mycup/images_unregistered/, so images/ matches "
    "the poses. Then check it with `nerf inspect-poses mycup`."
)

MAX_LISTED = 8  # names shown in the human summary before "... and N more"


@dataclass
class Colmap2PosesSummary:
    out: str
    model_dir: str
    format: str
    num_views: int
    num_points: int
    height: int
    width: int
    focal: float
    camera_model: str
    camera_id: int
    near_min: float
    near_max: float
    far_min: float
    far_max: float
    images_dir: Optional[str]
    unregistered_images: list[str]
    missing_images: list[str]
    moved_to: Optional[str]
    warnings: list[str]


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return shown + (f", ... and {more} more" if more > 0 else "")


def colmap2poses(
    sparse_dir: Path = typer.Argument(
        ...,
        metavar="SPARSE_DIR",
        help="COLMAP model folder holding cameras, images and points3D (.bin or .txt), "
        "or a scene folder with sparse/0/ inside.",
        show_default=False,
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Output file. Default: poses_bounds.npy in the scene folder (beside sparse/).",
        show_default=False,
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file if it exists."),
    images: Optional[Path] = typer.Option(
        None,
        "--images",
        help="Photo folder to check against the model. Default: images/ in the scene folder.",
        show_default=False,
    ),
    prune_images: bool = typer.Option(
        False,
        "--prune-images",
        help="Move photos COLMAP did not register into images_unregistered/ beside the photo "
        "folder, so the folder matches the poses. Nothing is deleted.",
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print one JSON summary on stdout instead of the table."
    ),
) -> None:
    """Write LLFF's poses_bounds.npy from a COLMAP sparse reconstruction (as imgs2poses)."""
    from nerfcli.cli.common import check_writable_target, stdout_json
    from nerfcli.data.formats import colmap, colmap_io
    from nerfcli.errors import DataError

    location = colmap_io.locate_model(sparse_dir)
    out_path = out if out is not None else location.scene_root / "poses_bounds.npy"
    check_writable_target(out_path, force, what="poses file")
    images_dir = images if images is not None else location.scene_root / "images"
    if images is not None and not images.is_dir():
        raise DataError(f"{images}: no such folder; pass the folder holding the photos")
    if prune_images and not images_dir.is_dir():
        raise DataError(
            f"{images_dir}: no photo folder to prune; pass --images with the folder COLMAP read"
        )

    model = colmap_io.read_model(location.model_dir, location.format)
    result = colmap.colmap_to_poses_bounds(model)
    warnings = list(result.warnings)
    if location.other_models:
        others = ", ".join(p.name for p in location.other_models)
        warnings.append(
            f"COLMAP split this capture into several models; using {location.model_dir.name}/ "
            f"({result.num_views} views) and ignoring {others}; photos registered only there "
            "get no pose"
        )

    unregistered, missing = _check_photos(images_dir, result.names, prune_images, warnings)
    destination = images_dir.parent / colmap.UNREGISTERED_FOLDER
    if prune_images and unregistered:
        colmap.check_move_aside(unregistered, destination)  # fail before writing anything
    colmap.save_poses_bounds(out_path, result.poses_bounds)
    moved_to = None
    if prune_images and unregistered:
        colmap.move_aside(unregistered, destination)
        moved_to = str(destination)

    bounds = result.bounds  # [N, 2]
    summary = Colmap2PosesSummary(
        out=str(out_path),
        model_dir=str(location.model_dir),
        format=location.format,
        num_views=result.num_views,
        num_points=result.num_points,
        height=result.height,
        width=result.width,
        focal=result.focal,
        camera_model=result.camera.model,
        camera_id=result.camera.camera_id,
        near_min=float(bounds[:, 0].min()),
        near_max=float(bounds[:, 0].max()),
        far_min=float(bounds[:, 1].min()),
        far_max=float(bounds[:, 1].max()),
        images_dir=str(images_dir) if images_dir.is_dir() else None,
        unregistered_images=[p.name for p in unregistered],
        missing_images=missing,
        moved_to=moved_to,
        warnings=warnings,
    )
    if json_output:
        stdout_json(asdict(summary))
        return

    _print_summary(summary)


def _check_photos(
    images_dir: Path, names: list[str], prune: bool, warnings: list[str]
) -> tuple[list[Path], list[str]]:
    """Photos beside the model: (unregistered files, registered names with no photo); what is
    worth acting on is appended to `warnings`."""
    from nerfcli.data.formats import colmap

    if not images_dir.is_dir():
        warnings.append(f"{images_dir}: no photo folder, so it was not checked against the poses")
        return [], []
    unregistered = colmap.unregistered_images(images_dir, names)
    missing = colmap.missing_images(images_dir, names)
    if missing:
        warnings.append(
            f"{len(missing)} registered photo(s) are not in {images_dir}: "
            f"{_listing(missing)}; the loader needs one photo per pose"
        )
    if unregistered and not prune:
        warnings.append(
            f"{len(unregistered)} photo(s) in {images_dir} were not registered by COLMAP "
            "and have no pose; the folder will not load until they are moved "
            "(re-run with --prune-images)"
        )
    return unregistered, missing


def _print_summary(summary: Colmap2PosesSummary) -> None:
    from rich.markup import escape
    from rich.table import Table

    from nerfcli.cli.common import console

    table = Table(title="colmap2poses", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("model", escape(f"{summary.model_dir} ({summary.format})"))
    table.add_row("views", f"{summary.num_views} (rows in image-name order)")
    table.add_row("3D points", str(summary.num_points))
    table.add_row("camera", f"{summary.camera_model} (camera {summary.camera_id})")
    table.add_row("hwf", f"{summary.height} x {summary.width} (H x W), focal {summary.focal:.6g}")
    table.add_row("near", f"{summary.near_min:.4g} .. {summary.near_max:.4g}")
    table.add_row("far", f"{summary.far_min:.4g} .. {summary.far_max:.4g}")
    if summary.images_dir is None:
        table.add_row("unregistered", "not checked (no photo folder)")
    elif summary.unregistered_images:
        names = _listing(summary.unregistered_images)
        where = f" -> moved to {summary.moved_to}" if summary.moved_to else ""
        table.add_row("unregistered", escape(f"{len(summary.unregistered_images)}: {names}{where}"))
    else:
        table.add_row("unregistered", "none")
    table.add_row("written", escape(summary.out))
    console.print(table)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True, markup=True)
