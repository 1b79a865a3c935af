"""`nerf export mesh|points|cameras CKPT`: geometry and cameras out of a checkpoint, as PLY and
transforms.json, in the capture's own coordinates (or `--frame training`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from nerfcli.cli.common import check_writable_target, info, make_progress, stdout_json
from nerfcli.cli.help import NerfCommand
from nerfcli.errors import NerfError

EPILOG = (
    "Example: [bold]nerf export mesh runs/lego/ckpt.pt -o lego.ply[/], "
    "[bold]nerf export points runs/cup/ckpt.pt -o cup_points.ply[/], "
    "[bold]nerf export cameras runs/cup/ckpt.pt -o cup_cameras[/]"
)

app = typer.Typer(
    epilog=EPILOG,
    name="export",
    help="Geometry and cameras out of a checkpoint: a mesh, a point cloud, the cameras.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


class Depth(str, Enum):
    median = "median"
    expected = "expected"


class Frame(str, Enum):
    capture = "capture"
    training = "training"


FRAME_HELP = (
    "capture: the capture's own coordinates (its poses file / COLMAP model / transforms.json); "
    "training: nerfcli's training frame. Every file records which."
)
CHECKPOINT_HELP = "Checkpoint file (or a run folder with ckpt.pt)."


def _parse_bbox(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if len(values) != 6:
        raise typer.BadParameter(
            f"{text!r}: expected 6 numbers x0,y0,z0,x1,y1,z1", param_hint="--bbox"
        )
    return values


def _progress_callback(progress):
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return update


def _finish(report, json_out: bool, quiet: bool) -> None:
    if json_out:
        stdout_json(report.to_dict())
    counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
    info(f"wrote {report.out} ({counts}) in {report.seconds:.1f} s", quiet)
    info(f"frame: {report.frame_description}", quiet)


def _default_out(checkpoint: Path, name: str) -> Path:
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    return folder / "export" / name


@app.command("mesh", cls=NerfCommand, epilog=EPILOG)
def mesh(
    checkpoint: Path = typer.Argument(..., help=CHECKPOINT_HELP),
    out: Path = typer.Option(
        None, "--out", "-o", help="PLY file to write (default: <run>/export/mesh.ply)."
    ),
    resolution: int = typer.Option(
        256,
        "--resolution",
        "-r",
        min=8,
        max=4096,
        help="Grid vertices along the box's longest axis.",
    ),
    bbox: str = typer.Option(
        None,
        "--bbox",
        help="Crop box x0,y0,z0,x1,y1,z1 in the model's space (NDC for forward-facing scenes, "
        "else the training frame). Default: the scene box; unbounded scenes: the region the "
        "cameras look at.",
    ),
    level: float = typer.Option(
        None,
        "--level",
        help="Density of the surface (default: the median of the density at the training "
        "rays' median depth, where the views see the surfaces).",
    ),
    decimate: float = typer.Option(
        0.0,
        "--decimate",
        min=0.0,
        help="Merge vertices within cells of this many grid voxels (0: keep every vertex).",
    ),
    seen_tolerance: float = typer.Option(
        0.05,
        "--seen-tolerance",
        min=0.0,
        help="Keep the vertices within this fraction of some training view's median depth "
        "(what the photos show; drops fog and hidden density); 0 keeps every vertex.",
    ),
    frame: Frame = typer.Option(Frame.capture, "--frame", help=FRAME_HELP),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Marching cubes on the density: a coloured triangle mesh as PLY."""
    from nerfcli.export.exports import export_mesh
    from nerfcli.training.checkpoint import load_checkpoint
    from nerfcli.training.device import select_device

    box = _parse_bbox(bbox)
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    out = out or _default_out(checkpoint, "mesh.ply")
    if out == _default_out(checkpoint, "mesh.ply"):
        out.parent.mkdir(parents=True, exist_ok=True)
    check_writable_target(out, force, "mesh")
    with make_progress(quiet) as progress:
        report = export_mesh(
            ckpt,
            out,
            resolution,
            box,
            level,
            decimate,
            frame.value,
            select_device(device),
            _progress_callback(progress),
            seen_tolerance,
        )
    _finish(report, json_out, quiet)


@app.command("cameras", cls=NerfCommand, epilog=EPILOG)
def cameras(
    checkpoint: Path = typer.Argument(..., help=CHECKPOINT_HELP),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for transforms.json, cameras.ply and sparse_points.ply (default: "
        "<run>/export/cameras).",
    ),
    frame: Frame = typer.Option(Frame.capture, "--frame", help=FRAME_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite files already in --out."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """The cameras as a nerfstudio transforms.json and PLY frustums (+ COLMAP's points)."""
    from nerfcli.export.exports import export_cameras
    from nerfcli.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    out = out or _default_out(checkpoint, "cameras")
    if out.exists() and not out.is_dir():
        raise NerfError(f"{out}: not a folder; give --out a folder for the camera files")
    existing = out / "transforms.json"
    if existing.exists() and not force:
        raise NerfError(f"{existing}: already exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise NerfError(f"{out}: folder {out.parent} does not exist; create it first")
    report = export_cameras(ckpt, out, frame.value)
    _finish(report, json_out, quiet)


@app.command("points", cls=NerfCommand, epilog=EPILOG)
def points(
    checkpoint: Path = typer.Argument(..., help=CHECKPOINT_HELP),
    out: Path = typer.Option(
        None, "--out", "-o", help="PLY file to write (default: <run>/export/points.ply)."
    ),
    num_points: int = typer.Option(
        1_000_000,
        "--num-points",
        "-n",
        min=1,
        help="At most this many points, shared by the views.",
    ),
    min_opacity: float = typer.Option(
        0.5, "--min-opacity", min=0.0, max=1.0, help="Keep pixels at least this opaque."
    ),
    downscale: int = typer.Option(
        1, "--downscale", min=1, help="Render the training views at 1/K resolution (faster)."
    ),
    edge_tolerance: float = typer.Option(
        0.05,
        "--edge-tolerance",
        min=0.0,
        help="Drop pixels whose 3 x 3 neighbourhood spans more than this fraction of their "
        "depth (outlines, where the depth is a mix of two surfaces); 0 keeps them.",
    ),
    depth: Depth = typer.Option(
        Depth.expected,
        "--depth",
        help="expected: the weighted mean depth (the closer on a trained model); median: where "
        "half of the pixel's opacity is reached (not pulled by floaters).",
    ),
    frame: Frame = typer.Option(Frame.capture, "--frame", help=FRAME_HELP),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """A coloured point cloud (with normals) from the rendered depth of the training views."""
    from nerfcli.export.exports import export_points
    from nerfcli.training.checkpoint import load_checkpoint
    from nerfcli.training.device import select_device

    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    out = out or _default_out(checkpoint, "points.ply")
    if out == _default_out(checkpoint, "points.ply"):
        out.parent.mkdir(parents=True, exist_ok=True)
    check_writable_target(out, force, "point cloud")
    with make_progress(quiet) as progress:
        report = export_points(
            ckpt,
            out,
            num_points,
            downscale,
            min_opacity,
            frame.value,
            select_device(device),
            _progress_callback(progress),
            edge_tolerance,
            depth.value,
        )
    _finish(report, json_out, quiet)
