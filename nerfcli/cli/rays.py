"""`nerf rays SCENE --view I`: the camera rays of one view, exactly as training builds them
(the same preset, data config and loader as `nerf train SCENE` with the same flags)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from nerfcli.cli.common import (
    FORMATS,
    SCENE_TYPE_NAMES,
    atomic_path,
    check_writable_target,
    choice,
    console,
    ignored_half_res,
    spherified,
    stdout_json,
)
from nerfcli.errors import NerfError

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
        help="Scene folder (LLFF, Blender, transforms.json) or its poses file; images are read "
        "only for --rgb.",
        show_default=False,
    ),
    view: int = typer.Option(
        ...,
        "--view",
        help="View index, 0.. in the format's order (LLFF: file order; Blender: train, val, test).",
        show_default=False,
    ),
    factor: int = typer.Option(
        None, "--factor", min=1, help="Image downsampling factor (default: the preset's)."
    ),
    half_res: bool = typer.Option(None, "--half-res/--full-res", help="Blender: 400 x 400."),
    data_format: str = typer.Option(
        None,
        "--format",
        help="llff, blender or transforms (default: detected).",
        callback=choice(*FORMATS),
    ),
    rgb: bool = typer.Option(
        False, "--rgb", help="With --out: add rgb [H, W, 3], the target colours training sees."
    ),
    ndc: bool | None = typer.Option(
        None,
        "--ndc/--no-ndc",
        help="Map rays to normalised device coordinates (near plane 1). "
        "Default: on, off with --spherify.",
        show_default=False,
    ),
    spherify: bool = typer.Option(
        False,
        "--spherify",
        help="Use the spherified training frame (captures that walk around an object).",
    ),
    scene_type: str = typer.Option(
        None,
        "--scene-type",
        callback=choice(*SCENE_TYPE_NAMES),
        help="forward, object or unbounded: the training frame `nerf train --scene-type` uses "
        "(default: chosen from the poses, as nerf train chooses it).",
    ),
    llff_camera: bool = typer.Option(
        False,
        "--llff-camera",
        help="LLFF: poses_bounds.npy's single camera even where sparse/0 has one per view.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Write the view's rays to an .npz: float32 rays_o, rays_d, viewdirs [H, W, 3], "
        "K [3, 3], c2w [3, 4], near, far, world_from_file [4, 4] (and rgb with --rgb).",
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
    skip_missing: bool = typer.Option(
        False,
        "--skip-missing",
        help="transforms.json: drop frames whose image file is missing (warned), instead of "
        "refusing the capture.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
) -> None:
    """Print or save the rays of one view in the training frame (NDC or world rays)."""
    pixels: list[Pixel] = list(pixel or [])  # parsed by the callback
    if out is not None:
        if out.suffix.lower() != ".npz":
            raise typer.BadParameter(f"{out}: the file name must end in .npz", param_hint="--out")
        check_writable_target(out, force)
    flags = {"factor": factor, "half_res": half_res, "format": data_format}
    flags.update(scene_type=scene_type, llff_camera=llff_camera or None)
    flags.update(skip_missing=skip_missing or None)
    if rgb and out is None:
        raise typer.BadParameter(
            "--rgb adds the colours to the --out file; give --out", param_hint="--rgb"
        )
    loaded, poses_file = _load(scene, flags, spherify, ndc, rgb and out)
    from nerfcli.data.formats import reads_option

    if half_res is not None and not reads_option(loaded.format, "half_res"):
        console.print(ignored_half_res(loaded.format))
    _check_view(loaded, poses_file, view, pixels)
    camera = loaded.camera(view)
    if out is not None:
        _write_npz(out, loaded, view, camera, rgb)
    pixel_rays = _pixel_rays(camera, pixels)
    if json_output:
        stdout_json(
            {
                "scene": str(poses_file),
                "view": view,
                "format": loaded.format,
                "factor": loaded.factor,
                "height": loaded.height,
                "width": loaded.width,
                "focal": camera.focal,
                "pixel_center": camera.pixel_center,
                "ndc": camera.ndc,
                "spherify": spherify,
                "scene_type": loaded.kind,
                "kind": loaded.kind,
                "cameras": loaded.source.get("cameras"),
                "distortion": camera.distortion,
                "near": camera.near,
                "far": camera.far,
                "K": camera.K,
                "c2w": camera.c2w,
                "world_from_file": loaded.world_from_file,
                "pixels": pixel_rays,
                "out": str(out) if out is not None else None,
            }
        )
    else:
        _print_human(poses_file, view, loaded, camera, pixel_rays)
    if out is not None:
        console.print(
            f"wrote {escape(str(out))} ({loaded.height} x {loaded.width} rays of view {view})"
        )


def _load(scene: Path, flags: dict, spherify: bool, ndc, with_images: bool):
    """The scene exactly as `nerf train SCENE` with these flags loads it (poses only unless
    the images are needed): (scene, the file that holds its poses)."""
    from nerfcli.data.formats import FORMATS, every_view_data, load_scene
    from nerfcli.models.resolve import ConfigRequest, resolve

    config, overrides = spherified(scene, flags["format"], None, ()) if spherify else (None, ())
    cfg, plan = resolve(ConfigRequest(scene, config, overrides=overrides, data=flags))
    data = cfg.data if ndc is None else replace(cfg.data, ndc=ndc)  # --spherify --ndc: allowed
    data = every_view_data(plan.format, data, 1)  # Blender: every view, as inspect-poses
    loaded = load_scene(scene, data, load_images=bool(with_images))
    poses_file = scene if scene.is_file() else scene / FORMATS[loaded.format][1]
    return loaded, poses_file


def _check_view(loaded, poses_file: Path, view: int, pixels: list[Pixel]) -> None:
    if not 0 <= view < loaded.num_views:
        raise NerfError(
            f"{poses_file}: view {view} is out of range; this scene has {loaded.num_views} views "
            f"(0..{loaded.num_views - 1})"
        )
    height, width = loaded.height, loaded.width
    for p in pixels:
        if not (0 <= p.x < width and 0 <= p.y < height):
            raise NerfError(
                f"{poses_file}: pixel {p.x},{p.y} is outside view {view} at --factor "
                f"{loaded.factor} ({width} x {height}: X in 0..{width - 1}, Y in 0..{height - 1})"
            )


def _write_npz(out: Path, loaded, view: int, camera, rgb: bool) -> None:
    """Every ray of the view [H, W], its camera and transform (and the target colours)."""
    import numpy as np

    from nerfcli.data.rays import camera_rays

    bundle = camera_rays(camera)  # [H, W]
    arrays = {
        "rays_o": bundle.origins.contiguous().numpy().astype(np.float32),
        "rays_d": bundle.directions.numpy().astype(np.float32),
        "viewdirs": bundle.viewdirs.numpy().astype(np.float32),
        "K": camera.K.astype(np.float32),
        "c2w": camera.c2w.astype(np.float32),
        "near": np.float32(camera.near),
        "far": np.float32(camera.far),
        "world_from_file": np.asarray(loaded.world_from_file, dtype=np.float64),
    }
    if rgb:
        arrays["rgb"] = loaded.images[view].astype(np.float32)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def _pixel_rays(camera, pixels: list[Pixel]) -> list[dict]:
    import numpy as np

    from nerfcli.data.rays import camera_pixel_rays

    cols = np.array([p.x for p in pixels], dtype=np.float32)
    rows = np.array([p.y for p in pixels], dtype=np.float32)
    picked = camera_pixel_rays(camera, cols, rows)  # [P]
    return [
        {
            "x": p.x,
            "y": p.y,
            "rays_o": picked.origins[k].tolist(),
            "rays_d": picked.directions[k].tolist(),
            "viewdirs": picked.viewdirs[k].tolist(),
        }
        for k, p in enumerate(pixels)
    ]


def _vec(values) -> str:
    return "[" + ", ".join(f"{v: .5f}" for v in values) + "]"


def _print_human(poses_file, view, scene, camera, pixel_rays) -> None:
    frame = "NDC" if camera.ndc else "world"
    c2w = camera.c2w
    console.print(
        f"{escape(str(poses_file))}: view {view} of {scene.num_views}, "
        f"{scene.height} x {scene.width} (H x W) at --factor {scene.factor}, "
        f"focal {camera.focal:.2f} px; {frame} rays, near {camera.near:.4g}, "
        f"far {camera.far:.4g}",
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
