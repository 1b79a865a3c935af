"""`nerf inspect-poses PATH`: summarise and check a capture's poses (and its images): an LLFF
poses_bounds.npy, a Blender scene or an instant-ngp / nerfstudio transforms.json."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from nerfcli.cli.common import (
    FORMATS,
    atomic_path,
    check_writable_target,
    choice,
    console,
    ignored_half_res,
    spherified,
    stdout_json,
)
from nerfcli.config import DataConfig
from nerfcli.errors import DataError

DATA_DEFAULTS = DataConfig()

EPILOG = (
    "Example: [bold]nerf inspect-poses ../shared/data/fern --plot fern_cameras.png[/]  "
    "(summary and checks on stderr; add --json for one JSON document on stdout). "
    "Exit code 1 when any check fails."
)


def _require_suffix(*suffixes: str):
    def callback(value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() not in suffixes:
            raise typer.BadParameter(f"{value}: the file name must end in {' or '.join(suffixes)}")
        return value

    return callback


def inspect_poses(
    path: Path = typer.Argument(
        ...,
        help="A scene folder (LLFF, Blender, transforms.json), a poses_bounds.npy or a .json.",
        show_default=False,
    ),
    factor: int = typer.Option(
        None,
        "--factor",
        min=1,
        help="Image downsampling factor to report at (default: as `nerf train` picks it).",
    ),
    half_res: bool = typer.Option(None, "--half-res/--full-res", help="Blender: 400 x 400."),
    data_format: str = typer.Option(
        None,
        "--format",
        help="llff, blender or transforms (default: detected).",
        callback=choice(*FORMATS),
    ),
    spherify: bool = typer.Option(
        False,
        "--spherify",
        help="Use the spherified frame and circle path (captures that walk around an object).",
    ),
    scene_type: str = typer.Option(
        None,
        "--scene-type",
        help="forward, object or unbounded: report (and write with --path-out, --plot) the "
        "training frame of this scene type. Default: the one `nerf train` picks (LLFF: "
        "forward-facing captures forward, surround ones unbounded, in the walk-around frame).",
    ),
    frames: int = typer.Option(
        None,
        "--frames",
        min=1,
        help="Frames of the default render path (default: the format's own, as render-video "
        "renders it: Blender 40, others 120).",
        show_default=False,
    ),
    llffhold: int = typer.Option(
        DATA_DEFAULTS.llffhold, "--llffhold", min=0, help="Every N-th view is a test view; 0: none."
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print one JSON document on stdout instead of the table."
    ),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Write a PNG of the cameras (top and side views, render path drawn over them).",
        callback=_require_suffix(".png"),
    ),
    path_out: Path | None = typer.Option(
        None,
        "--path-out",
        help="Write the default render path (the one render-video renders by default): "
        "float32 [F, 3, 4] camera-to-world matrices (.npy, training frame), or a camera path "
        "file (.json, as `nerf view` writes; `render-video --path` reads both).",
        callback=_require_suffix(".npy", ".json"),
    ),
    skip_missing: bool = typer.Option(
        False,
        "--skip-missing",
        help="transforms.json: drop frames whose image file is missing (warned), instead of "
        "refusing the capture.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Overwrite existing --plot/--path-out files."
    ),
) -> None:
    """Summarise a capture's poses (LLFF, Blender, transforms.json) and check them.

    Problems in the data are reported as failed checks (exit code 1, the report is still
    printed); a file that is not an N x 17 .npy array at all is a one-line error.
    """
    from nerfcli.data.formats import detect_format, format_module

    for target in (plot, path_out):
        if target is not None:
            check_writable_target(target, force)
    if plot is not None and path_out is not None and plot.resolve() == path_out.resolve():
        raise typer.BadParameter("--plot and --path-out name the same file")

    fmt = data_format or detect_format(path)
    if format_module(fmt).REPORT == "poses":  # LLFF: checks even arrays the loader refuses
        from nerfcli.data.formats.llff_inspect import inspect_poses as run_inspection

        if half_res is not None:
            console.print(ignored_half_res(fmt))

        report = run_inspection(
            path,
            factor=factor or DATA_DEFAULTS.factor,
            spherify=spherify,
            llffhold=llffhold,
            render_frames=frames or format_module(fmt).RENDER_FRAMES,
            scene_type=scene_type or "auto",
        )
        printer = _print_report
    else:
        from nerfcli.data.inspect.scene import inspect_scene
        from nerfcli.models.resolve import ConfigRequest, resolve_config

        if spherify:
            spherified(path, fmt, None, ())  # a usage error: only LLFF has the frame

        flags = {
            "format": fmt,
            "factor": factor,
            "half_res": half_res,
            "render_frames": frames or 0,
        }
        flags["scene_type"] = scene_type
        flags["skip_missing"] = skip_missing or None
        report = inspect_scene(path, resolve_config(ConfigRequest(path, data=flags)).data)
        printer = _print_scene_report
    if json_output:
        stdout_json({"format": fmt, **report.to_json()})  # one schema: every format's has it
    else:
        printer(report)

    failed = report.failed
    if failed:
        first = failed[0]
        raise DataError(
            f"{report.path}: {len(failed)} of {len(report.checks)} checks failed "
            f"({', '.join(c.name for c in failed)}); first: {first.message}"
        )
    assert report.scene is not None  # every pose check passed
    _write_outputs(report, plot, path_out)


def _write_outputs(report, plot: Path | None, path_out: Path | None) -> None:
    """--path-out (the default render path, .npy) and --plot (the camera picture, .png)."""
    scene = report.scene
    if path_out is not None and path_out.suffix.lower() == ".json":
        from nerfcli.evaluation.camera_path import write_default_path

        with atomic_path(path_out) as tmp:
            write_default_path(tmp, scene)
        console.print(f"wrote {path_out} ({scene.render_poses.shape[0]} cameras, camera path file)")
    elif path_out is not None:
        import numpy as np

        with atomic_path(path_out) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, scene.render_poses.astype(np.float32))
        console.print(
            f"wrote {escape(str(path_out))} ({scene.render_poses.shape[0]} x 3 x 4 float32 camera-to-world)"
        )
    if plot is not None:
        from nerfcli.plot import plot_cameras

        title = (
            f"{report.path.parent.name}/{report.path.name}: {report.num_views} views, "
            f"{report.capture}, {report.render_path} path"
        )
        with atomic_path(plot) as tmp:
            plot_cameras(
                tmp,
                scene.c2w,
                scene.render_poses,
                scene.i_test,
                title=title,
                up_axis=1 if scene.render_path == "spiral" else 2,  # LLFF: y up; others: z up
            )
        console.print(f"wrote {escape(str(plot))}")


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _print_report(report) -> None:
    table = Table(title=escape(str(report.path)), title_justify="left", show_header=False, box=None)
    table.add_column("item", style="bold")
    table.add_column("value")
    split = (
        f"{len(report.train_views)} train, {len(report.test_views)} test: "
        + ", ".join(map(str, report.test_views[:12]))
        + (" ..." if len(report.test_views) > 12 else "")
    )
    table.add_row("views", f"{report.num_views} ({split})")
    if report.stored_height is not None:
        table.add_row(
            "image size (H x W)",
            f"{report.stored_height} x {report.stored_width} full; "
            f"{report.height} x {report.width} at --factor {report.factor}",
        )
        table.add_row(
            "focal",
            f"{report.stored_focal:.1f} px full; {report.focal:.1f} px at --factor {report.factor}",
        )
        table.add_row(
            "field of view",
            f"{report.fov_x_deg:.1f} deg horizontal, {report.fov_y_deg:.1f} deg vertical",
        )
    else:
        table.add_row("image size (H x W)", "unknown (see the intrinsics check)")
    table.add_row(
        "near bound",
        f"min {_fmt(report.near_min)}, median {_fmt(report.near_median)}, "
        f"max {_fmt(report.near_max)}",
    )
    table.add_row(
        "far bound",
        f"min {_fmt(report.far_min)}, median {_fmt(report.far_median)}, max {_fmt(report.far_max)}",
    )
    if report.scene is not None:
        for name, value in _frame_rows(report):
            table.add_row(name, value)
    else:
        table.add_row("training frame", "not computed: the loader refuses these poses (see checks)")
    if report.image_folders:
        table.add_row(
            "images",
            "; ".join(
                f"{folder.folder}/: {folder.count}"
                + (f" of {folder.height} x {folder.width}" if folder.height else "")
                for folder in report.image_folders
            ),
        )
    else:
        table.add_row("images", "none beside the poses (image checks skipped)")
    console.print(table)
    _print_checks(report.checks)


def _print_checks(checks) -> None:
    console.print("[bold]checks[/]")
    unicode = (console.encoding or "").lower().startswith("utf")
    for check in checks:
        if check.ok:
            mark = "[green]" + ("\u2713" if unicode else "ok") + "[/]"
        else:
            mark = "[bold red]" + ("\u2717" if unicode else "FAIL") + "[/]"
        console.print(f"  {mark} {check.name}: {escape(check.message)}")


def _print_scene_report(report) -> None:
    """The summary table and checks of a Blender or transforms.json capture."""
    table = Table(title=escape(str(report.path)), title_justify="left", show_header=False, box=None)
    table.add_column("item", style="bold")
    table.add_column("value")
    splits = ", ".join(f"{n} {name}" for name, n in report.splits.items() if n)
    distortion = f", distortion in {report.distorted_views} views" if report.distorted_views else ""
    lo, hi = report.focal_range
    focal = f"{report.focal_x:.2f} x {report.focal_y:.2f} px" + (
        f" (views {lo:.1f}..{hi:.1f})" if hi - lo > 1e-3 * hi else ""
    )
    rows = [
        ("format", report.format),
        ("views", f"{report.num_views} ({splits})"),
        (
            "image size (H x W)",
            f"{report.stored_height} x {report.stored_width} stored; "
            f"{report.height} x {report.width} loaded (factor {report.factor})",
        ),
        (
            "focal",
            f"{report.stored_focal_x:.2f} x {report.stored_focal_y:.2f} px stored; {focal} loaded",
        ),
        (
            "field of view",
            f"{report.fov_x_deg:.1f} deg horizontal, {report.fov_y_deg:.1f} vertical",
        ),
        ("camera", f"{report.camera_model}{distortion}; pixel centres +{report.pixel_center:g}"),
        ("ray bounds", f"near {report.near:.4g}, far {report.far:.4g} ({report.kind})"),
        ("background", report.background),
        (
            "camera extent",
            "x {:.3g}, y {:.3g}, z {:.3g} (training frame)".format(*report.position_extent),
        ),
        ("mean neighbour baseline", _fmt(report.mean_baseline, 3)),
        (
            "capture",
            f"{report.capture} (views within {report.view_spread_deg:.0f} deg of their mean "
            f"direction); `nerf train` picks scene type {report.kind}",
        ),
        ("render path", f"{report.render_path}, {report.render_frames} frames"),
    ]
    for name, value in rows:
        table.add_row(name, escape(value))
    console.print(table)
    _print_checks(report.checks)


def _frame_rows(report) -> list[tuple[str, str]]:
    """The training-frame rows of an LLFF report (rescale, extent, capture, render path)."""
    extent = report.position_extent
    capture = (
        f"{report.capture} (views within {report.view_spread_deg:.0f} deg of their mean direction)"
    )
    if report.capture == "forward-facing" and report.spherify:
        capture += "; [yellow]hint: --spherify is meant for surround captures[/]"
    else:
        capture += f"; scene type {report.scene_type}, the {report.frame} frame"
        if report.scene_type == "unbounded" and report.capture == "surround":
            capture += " (--scene-type forward: nerf-pytorch's)"
    if report.focus_depth is not None:
        path = f"spiral, {report.render_frames} frames, focus depth {report.focus_depth:.4g}"
    elif report.render_path == "orbit":
        path = f"orbit, {report.render_frames} frames (around the cameras' focus)"
    else:
        path = f"circle, {report.render_frames} frames (spherified)"
    how = "walk-around: mean camera distance 1" if report.frame == "walk-around" else None
    return [
        (
            "rescale",
            f"x{report.scale:.4g} ({how or f'bd_factor {report.bd_factor}'}): near min "
            f"{report.rescaled_near_min:.4g}, far max {report.rescaled_far_max:.4g}",
        ),
        (
            "camera extent",
            f"x {extent[0]:.3g}, y {extent[1]:.3g}, z {extent[2]:.3g} (training frame)",
        ),
        ("mean neighbour baseline", f"{_fmt(report.mean_baseline, 3)}"),
        ("capture", capture),
        ("render path", path),
    ]
