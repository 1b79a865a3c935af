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
from nerfcli.errors import DataError

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
        None,
        "--llffhold",
        min=0,
        help="Every N-th view is a test view; 0: none (default: the preset's, 8).",
        show_default=False,
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
    from nerfcli.data.formats import detect_format, format_module, reads_option
    from nerfcli.models.resolve import ConfigRequest, resolve_data

    for target in (plot, path_out):
        if target is not None:
            check_writable_target(target, force)
    if plot is not None and path_out is not None and plot.resolve() == path_out.resolve():
        raise typer.BadParameter("--plot and --path-out name the same file")

    fmt = data_format or detect_format(path)
    if half_res is not None and not reads_option(fmt, "half_res"):
        console.print(ignored_half_res(fmt))
    # --spherify: LLFF's spherified frame (its preset); a usage error on other formats
    config, overrides = spherified(path, fmt, None, ()) if spherify else (None, ())
    flags = {
        "format": fmt,
        "factor": factor,
        "half_res": half_res,
        "render_frames": frames,
        "scene_type": scene_type,
        "llffhold": llffhold,
        "skip_missing": skip_missing or None,
    }
    data = resolve_data(ConfigRequest(path, config, overrides=overrides, data=flags))
    report = format_module(fmt).inspect(path, data)  # each format's own report (one protocol)
    if json_output:
        stdout_json({"format": fmt, **report.to_json()})  # one schema: every format's has it
    else:
        _print_report(report)

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


def _print_report(report) -> None:
    """Every format's report alike: its summary rows as a table, then its checks."""
    table = Table(title=escape(str(report.path)), title_justify="left", show_header=False, box=None)
    table.add_column("item", style="bold")
    table.add_column("value")
    for row in report.summary_rows():
        hint = f"; [yellow]hint: {escape(row.hint)}[/]" if row.hint else ""
        table.add_row(row.name, escape(row.value) + hint)
    console.print(table)
    console.print("[bold]checks[/]")
    unicode = (console.encoding or "").lower().startswith("utf")
    for check in report.checks:
        if check.ok:
            mark = "[green]" + ("\u2713" if unicode else "ok") + "[/]"
        else:
            mark = "[bold red]" + ("\u2717" if unicode else "FAIL") + "[/]"
        console.print(f"  {mark} {check.name}: {escape(check.message)}")
