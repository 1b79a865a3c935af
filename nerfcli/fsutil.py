"""Atomic file writes: write a temp file beside the target, then rename over it.

A process killed at any moment (SIGKILL included) leaves either the old file or the new one,
never a half-written one. Temp files get the usual permissions (0666 & ~umask), not mkstemp's 0600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_path_beside(path: str | Path, suffix: str | None = None) -> Path:
    """Create an empty temp file in the target's folder (same filesystem, so rename is atomic)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix, dir=parent
    )
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())
    return Path(tmp)


def fsync_path(path: str | Path) -> None:
    """fsync a file or folder; best effort (some filesystems refuse folders)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(
    path: str | Path, suffix: str | None = None, durable: bool = False
) -> Iterator[Path]:
    """Yield a temp path beside `path`; when the block succeeds it is renamed over `path`
    (fsynced first when durable); on any error the temp file is removed and `path` untouched."""
    path = Path(path)
    tmp = temp_path_beside(path, suffix)
    try:
        yield tmp
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_path(path.parent if str(path.parent) else ".")
    finally:
        if tmp.exists():
            tmp.unlink()
