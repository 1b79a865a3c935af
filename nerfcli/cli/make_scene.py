"""`nerf make-scene OUT`: render the generated forward-facing test scene in LLFF layout."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from nerfcli.cli.common import console, make_progress, stdout_json

EPILOG = (
    "Example: [bold]nerf make-scene data/synthetic --preset demo[/]  then "
    "[bold]nerf inspect-poses data/synthetic --factor 1[/] and "
    "[bold]nerf train data/synthetic --config synthetic[/]. "
    "Same seed, same bytes; add --json for one JSON document on stdout."
)


class ScenePreset(str, Enum):
    small = "small"
    demo = "demo"
    sfm = "sfm"
    symmetric = "symmetric"


def make_scene(
    out: Path = typer.Argument(
        ...,
        help="Scene folder to create (poses_bounds.npy, images/, depth/, scene.json).",
        show_default=False,
    ),
    preset: ScenePreset = typer.Option(
        ScenePreset.small,
        "--preset",
        help="small: 16 views of 64 x 48 for tests; demo: 25 views of 160 x 120; sfm: 12 "
        "views of 256 x 192 with non-repeating texture, enough for SIFT (`nerf sfm`); "
        "symmetric: 36 views of 256 x 192 walking around a can on a tiled floor that look "
        "the same from opposite sides (`nerf sfm` on doppelgangers).",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed: camera jitter, object placement."),
    views: int = typer.Option(
        None, "--views", min=2, max=400, help="Number of views (default from the preset)."
    ),
    height: int = typer.Option(
        None, "--height", min=8, max=2048, help="Image height in pixels (default from the preset)."
    ),
    width: int = typer.Option(
        None,
        "--width",
        min=8,
        max=2048,
        help="Image width in pixels (default from the preset); focal is 0.875 x width.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace OUT if it holds a previously generated scene."
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print what was written as one JSON document on stdout."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Render a small forward-facing capture (textured planes, spheres, a box) with known poses
    and ground-truth depth, written like an LLFF capture (--preset symmetric: a walk around a can
    on a tiled floor that looks the same from opposite sides)."""
    from nerfcli.data.synthetic import make_scene as build_scene

    with make_progress(quiet) as progress:
        task = progress.add_task("rendering views", total=None)

        def on_view(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        info = build_scene(
            out,
            preset=preset.value,
            seed=seed,
            views=views,
            height=height,
            width=width,
            force=force,
            on_view=on_view,
        )
    if json_output:
        stdout_json(info.to_dict())
        return
    if quiet:
        return
    table = Table(title=f"generated scene {escape(str(info.path))}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("preset / seed", f"{info.preset} / {info.seed}")
    table.add_row("views", f"{info.num_views} (test views {info.test_views})")
    table.add_row("image size (W x H)", f"{info.width} x {info.height}, focal {info.focal:g}")
    table.add_row("antialiasing", f"{info.supersample} x {info.supersample} rays per pixel")
    table.add_row("depth range", f"{info.depth_min:.3f} .. {info.depth_max:.3f}")
    table.add_row("bounds", f"near {info.near:.3f}, far {info.far:.3f}")
    table.add_row("time", f"{info.seconds:.2f} s")
    console.print(table)
