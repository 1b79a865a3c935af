"""Shared CLI plumbing: the stderr console, JSON output, progress bars, atomic writes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nerfcli.errors import NerfError, UsageError
from nerfcli.fsutil import atomic_write

# Humans read stderr; scripts read stdout.
console = Console(stderr=True, highlight=False)


def stdout_json(doc: Any) -> None:
    """Print exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(to_jsonable(doc), indent=2) + "\n")
    sys.stdout.flush()


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def q(value: Any) -> str:
    """A user's path or value, escaped for rich markup (a folder named runs[x] prints as is)."""
    return escape(str(value))


def progress_enabled(quiet: bool) -> bool:
    return not quiet and console.is_terminal


def make_progress(quiet: bool, *extra_columns) -> Progress:
    """A rich progress bar on stderr, disabled when stderr is not a terminal or with --quiet."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not progress_enabled(quiet),
        transient=False,
    )


def track(items: Iterable, total: int, description: str, quiet: bool) -> Iterator:
    with make_progress(quiet) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


def info(message: str, quiet: bool = False) -> None:
    """One message on stderr, never hard-wrapped (a path in it stays whole when the output
    is piped or logged; a terminal wraps it itself)."""
    if not quiet:
        console.print(message, soft_wrap=True)


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, else remove it."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise NerfError(f"{path}: folder {parent} does not exist; create it first")
    try:
        with atomic_write(path, suffix) as tmp:
            yield tmp
    except OSError as exc:
        raise NerfError(f"{path}: cannot write ({exc.strerror or exc})") from None


def check_writable_target(path: Path, force: bool = False, what: str = "output") -> None:
    """Refuse to overwrite an existing file unless forced; the folder must exist."""
    if path.exists() and not force:
        raise NerfError(f"{path}: {what} already exists; pass --force to overwrite it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise NerfError(f"{path}: folder {parent} does not exist; create it first")


def ignored_half_res(data_format: str) -> str:
    return (
        f"[yellow]warning:[/] --half-res/--full-res is for Blender captures; ignored on this "
        f"{data_format} capture (its size is set by --factor)"
    )


def spherified(
    scene: Path, data_format: str | None, config: str | None, overrides: list[str] | tuple
) -> tuple[str | None, tuple[str, ...]]:
    """--spherify: the LLFF format's spherified frame (its preset and keys, data.llff.spherify
    and data.ndc=false, under the user's own --config and --set): (config, overrides). A
    usage error on a capture of another format, which has no spherified frame."""
    from nerfcli.data.formats import detect_format, reads_option
    from nerfcli.data.formats.llff_config import SPHERIFY_OVERRIDES, SPHERIFY_PRESET

    name = data_format or detect_format(scene)
    if not reads_option(name, "spherify"):
        raise UsageError(
            f"--spherify is nerf-pytorch's spherified LLFF frame; this {name} scene trains as "
            "--scene-type object or unbounded"
        )
    return config or SPHERIFY_PRESET, (*SPHERIFY_OVERRIDES, *overrides)


def check_new_eval_dir(out: Path) -> None:
    """An --out folder for eval: missing or empty (metrics.json is never overwritten)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: a file, not a folder; choose a new folder for the results")
    if out.is_dir() and any(out.iterdir()):
        raise NerfError(
            f"{out}: folder exists and is not empty (eval never overwrites its metrics.json); "
            "choose another --out, or drop --out for a fresh folder beside the checkpoint"
        )


def fresh_folder(path: Path) -> Path:
    """`path` when it is missing or empty, else the first missing or empty path_2, path_3, ..."""
    candidate, number = path, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        number += 1
        candidate = path.with_name(f"{path.name}_{number}")
    return candidate


def check_downscale(
    downscale: int, height: int, width: int, minimum: int = 1, flag: str = "--downscale"
) -> None:
    """1/K resolution must leave `minimum` pixels each way (a zero-pixel camera otherwise;
    an .mp4 needs two)."""
    if height // downscale < minimum or width // downscale < minimum:
        largest = max(min(height, width) // minimum, 1)
        raise UsageError(
            f"{flag} {downscale}: the images are {width} x {height} (W x H); at most "
            f"{flag} {largest} leaves {minimum} pixel{'s' if minimum > 1 else ''} each way"
        )


# The values of the options that pick one of a few things. MODEL_NAMES mirrors
# nerfcli.models.MODELS (a test checks it), so the CLI can check --model without importing torch.
FORMATS = ("llff", "blender", "transforms")
SCENE_TYPE_NAMES = ("forward", "object", "unbounded")
DEVICES = ("auto", "cpu", "cuda", "mps")
MODEL_NAMES = ("nerf", "tensorf")


def choice(*allowed: str):
    """A Typer callback: the value must be one of `allowed` (any case), else a usage error
    (exit 2) that names the flag and the choices."""

    def check(ctx, param, value):
        if value is None:
            return value
        if value.lower() not in allowed:
            import typer

            raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")
        return value.lower()

    return check


def positive(ctx, param, value):
    """A Typer callback: a number > 0 (None passes)."""
    if value is not None and not value > 0:
        import typer

        raise typer.BadParameter(f"must be more than 0, got {value:g}")
    return value
