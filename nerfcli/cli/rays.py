"""`nerf rays SCENE --view I`: the camera rays of one view, exactly as training builds them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from nerfcli.cli.common import atomic_path, check_writable_target, console, stdout_json
from nerfcli.config import DataConfig
from nerfcli.errors import NerfError

DATA_DEFAULTS = DataConfig()

EPILOG = (
    "Example: [bold]nerf rays ../shared/data/fern --view 3 --pixel 0,0 --pixel 252,189 "
    "--json[/]  (X is the column, Y the row, at --factor; add --out rays.npz for the whole view)."
)


@dataclass(frozen=True)
class Pixel:
    x: int  # column
    y: int  # row


def parse_pixel(text: str) -> Pixel:
    """'X,Y' -> Pixel; malformed text is a usage error (exit 2)."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return Pixel(int(parts[0].strip()), int(parts[1].strip()))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not X,Y (two whole numbers: column, row), e.g. --pixel 10,20"
        ) from None


def _parse_pixels(values: list[str] | None) -> list[Pixel]:
    """Typer callback of --pixel: the parsed pixels (a usage error names the bad value)."""
    return [parse_pixel(value) for value in values or []]


def rays(
    scene: Path = typer.Argument(
        ...,
        help="Scene folder or its poses_bounds.npy (images are not needed).",
        show_default=False,
    ),
    view: int = typer.Option(
        ..., "--view", help="View index, 0.. in poses_bounds.npy order.", show_default=False
    ),
    factor: int = typer.Option(
        DATA_DEFAULTS.factor,
        "--factor",
        min=1,
        help="Image downsampling factor (sets H, W, focal).",
    ),
    ndc: bool | None = typer.Option(
        None,
        "--ndc/--no-ndc",
        help="Map rays to normalised device coordinates (near plane 1). "
        "Default: on, off with --spherify.",
        show_default=False,
    ),
    spherify: bool = typer.Option(
        DATA_DEFAULTS.spherify,
        "--spherify",
        help="Use the spherified training frame (captures that walk around an object).",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Write the view's rays to an .npz: float32 rays_o, rays_d, viewdirs [H, W, 3], "
        "K [3, 3], c2w [3, 4], near, far.",
    ),
    pixel: list[str] | None = typer.Option(
        None,
        "--pixel",
        help="X,Y (column, row) of a pixel whose ray to print; repeatable.",
        show_default=False,
        callback=_parse_pixels,
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print one JSON document (view, K, c2w, the --pixel rays) on stdout."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
) -> None:
    """Print or save the rays of one view in the training frame (recentred, rescaled, NDC)."""
    pixels: list[Pixel] = list(pixel or [])  # parsed by the callback
    if out is not None:
        if out.suffix.lower() != ".npz":
            raise typer.BadParameter(f"{out}: the file name must end in .npz", param_hint="--out")
        check_writable_target(out, force)
    use_ndc = (not spherify) if ndc is None else ndc

    import numpy as np

    from nerfcli.data.formats.llff import load_scene
    from nerfcli.data.rays import make_pixel_rays, make_rays

    loaded = load_scene(
        scene,
        factor=factor,
        bd_factor=DATA_DEFAULTS.bd_factor,
        recenter=DATA_DEFAULTS.recenter,
        spherify=spherify,
        llffhold=DATA_DEFAULTS.llffhold,
        load_imgs=False,
    )
    poses_file = scene if scene.is_file() else Path(loaded.root) / "poses_bounds.npy"
    if not 0 <= view < loaded.num_views:
        raise NerfError(
            f"{poses_file}: view {view} is out of range; this scene has {loaded.num_views} views "
            f"(0..{loaded.num_views - 1})"
        )
    height, width = loaded.height, loaded.width
    for p in pixels:
        if not (0 <= p.x < width and 0 <= p.y < height):
            raise NerfError(
                f"{poses_file}: pixel {p.x},{p.y} is outside view {view} at --factor {factor} "
                f"({width} x {height}: X in 0..{width - 1}, Y in 0..{height - 1})"
            )
    c2w = loaded.c2w[view]  # [3, 4]
    K = loaded.K  # [3, 3]
    near, far = loaded.near_far(use_ndc)

    if out is not None:
        bundle = make_rays(height, width, loaded.focal, c2w, use_ndc, K=K)  # [H, W]
        arrays = {
            "rays_o": bundle.origins.contiguous().numpy().astype(np.float32),
            "rays_d": bundle.directions.numpy().astype(np.float32),
            "viewdirs": bundle.viewdirs.numpy().astype(np.float32),
            "K": K.astype(np.float32),
            "c2w": c2w.astype(np.float32),
            "near": np.float32(near),
            "far": np.float32(far),
        }
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

    cols = np.array([p.x for p in pixels], dtype=np.float32)
    rows = np.array([p.y for p in pixels], dtype=np.float32)
    picked = make_pixel_rays(height, width, loaded.focal, c2w, use_ndc, cols, rows, K=K)  # [P]
    pixel_rays = [
        {
            "x": p.x,
            "y": p.y,
            "rays_o": picked.origins[k].tolist(),
            "rays_d": picked.directions[k].tolist(),
            "viewdirs": picked.viewdirs[k].tolist(),
        }
        for k, p in enumerate(pixels)
    ]
    if json_output:
        stdout_json(
            {
                "scene": str(poses_file),
                "view": view,
                "factor": factor,
                "height": height,
                "width": width,
                "focal": loaded.focal,
                "ndc": use_ndc,
                "spherify": spherify,
                "near": near,
                "far": far,
                "K": K,
                "c2w": c2w,
                "pixels": pixel_rays,
                "out": str(out) if out is not None else None,
            }
        )
    else:
        _print_human(poses_file, view, loaded, use_ndc, near, far, c2w, pixel_rays)
    if out is not None:
        console.print(f"wrote {escape(str(out))} ({height} x {width} rays of view {view})")


def _vec(values) -> str:
    return "[" + ", ".join(f"{v: .5f}" for v in values) + "]"


def _print_human(poses_file, view, scene, use_ndc, near, far, c2w, pixel_rays) -> None:
    frame = "NDC" if use_ndc else "world"
    console.print(
        f"{escape(str(poses_file))}: view {view} of {scene.num_views}, "
        f"{scene.height} x {scene.width} (H x W) at --factor {scene.factor}, "
        f"focal {scene.focal:.2f} px; {frame} rays, near {near:.4g}, far {far:.4g}",
        soft_wrap=True,
    )
    console.print(escape("camera-to-world [right, up, back | position] (training frame):"))
    for row in c2w:
        console.print("  " + _vec(row))
    if pixel_rays:
        table = Table(title=f"rays ({frame})", title_justify="left")
        for column in ("x", "y", "rays_o", "rays_d", "viewdirs"):
            table.add_column(column, justify="right" if column in ("x", "y") else "left")
        for item in pixel_rays:
            table.add_row(
                str(item["x"]),
                str(item["y"]),
                _vec(item["rays_o"]),
                _vec(item["rays_d"]),
                _vec(item["viewdirs"]),
            )
        console.print(table)
