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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nerfcli.errors import NerfError
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
    if not quiet:
        console.print(message)


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
