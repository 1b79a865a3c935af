"""The run folder: created only when it is new (an existing run is never overwritten), probed
for writes before any training, cleaned of temp files a killed run left, and its metrics log
appended to and trimmed back to a checkpoint's step on resume."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from nerfcli.config import dump_yaml
from nerfcli.errors import CheckpointError, NerfError
from nerfcli.fsutil import atomic_write
from nerfcli.models.config import Config
from nerfcli.training.checkpoint import Checkpoint, save_checkpoint


def prepare_run_dir(out_dir: Path, cfg: Config, resume: bool) -> None:
    """Create the run folder; an existing non-empty one needs --resume (never overwritten).

    Both paths check that the folder takes a write before any training, and --resume first
    removes the temp files of writes that a killed run left behind.
    """
    if resume:
        if not (out_dir / "ckpt.pt").is_file():
            hint = (
                "the run stopped before its first checkpoint; delete the folder or choose "
                "another --out and train again"
                if (out_dir / "config.yaml").is_file()
                else "start a run without --resume"
            )
            raise CheckpointError(f"{out_dir}: nothing to resume (no ckpt.pt); {hint}")
        _check_writable(out_dir)
        remove_stale_temp_files(out_dir)
        return
    check_new_run_dir(out_dir)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NerfError(
            f"{out_dir}: cannot create the run folder ({exc.strerror or exc})"
        ) from None
    try:
        _check_writable(out_dir)
        with atomic_write(out_dir / "config.yaml") as tmp:
            tmp.write_text(dump_yaml(cfg), encoding="utf-8")
    except (NerfError, OSError) as exc:
        if created:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        if isinstance(exc, NerfError):
            raise
        raise NerfError(f"{out_dir}: cannot write the run folder ({exc.strerror or exc})") from None


_PROBE = ".write-test"


def check_new_run_dir(out_dir: Path) -> None:
    """A new run needs a missing or empty folder: an existing run is never overwritten."""
    if out_dir.exists() and (
        not out_dir.is_dir() or any(p.name != _PROBE for p in out_dir.iterdir())
    ):
        raise NerfError(
            f"{out_dir}: run folder already exists; pass --resume to continue it or choose "
            "another --out"
        )


def _check_writable(out_dir: Path) -> None:
    """Write and remove a small file: a read-only or full disk fails here, before training."""
    probe = out_dir / _PROBE
    try:
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as exc:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        raise NerfError(f"{out_dir}: cannot write the run folder ({exc.strerror or exc})") from None


def remove_stale_temp_files(out_dir: Path) -> list[Path]:
    """Delete the temp files of atomic writes a killed run left behind (`.ckpt.pt.*.tmp` and the
    like; never a finished file). Returns what was removed."""
    removed = []
    for folder, pattern in (
        (out_dir, ".ckpt.pt.*"),
        (out_dir, ".config.yaml.*"),
        (out_dir, ".metrics.jsonl.*"),
        (out_dir, _PROBE),
        (out_dir / "checkpoints", ".step_*"),
        (out_dir / "previews", ".step_*"),
    ):
        for path in folder.glob(pattern) if folder.is_dir() else []:
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


def trim_log(path: Path, step: int) -> None:
    """On resume, drop metrics.jsonl records past the checkpoint's step (a killed run got further
    than its last checkpoint) and any unreadable line, so the log reads as one run."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            if record["step"] <= step:
                kept.append(line)
    if len(kept) == len(lines):
        return
    try:
        with atomic_write(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    except OSError as exc:
        raise NerfError(f"{path}: cannot write ({exc.strerror or exc})") from None


def append_log(path: Path, record: dict) -> None:
    """One JSON line appended to metrics.jsonl."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise NerfError(
            f"{path}: cannot write ({exc.strerror or exc}); the last checkpoint is intact: "
            "free space or fix the folder, then --resume"
        ) from None


def discard_unstarted_run(out_dir: Path) -> bool:
    """Remove a new run's folder that failed before its first checkpoint (config.yaml,
    metrics.jsonl, previews/), so it blocks neither a new run nor --resume. A folder with a
    checkpoint or anything else in it is left alone. Returns whether it was removed."""
    if not out_dir.is_dir() or (out_dir / "ckpt.pt").exists():
        return False
    ours = {"config.yaml", "metrics.jsonl", "previews", "checkpoints", _PROBE}
    entries = list(out_dir.iterdir())
    if any(p.name not in ours and not p.name.startswith(".") for p in entries):
        return False
    for folder in (out_dir / "previews", out_dir / "checkpoints"):
        if folder.is_dir() and any(p.suffix == ".pt" for p in folder.iterdir()):
            return False
    import shutil

    shutil.rmtree(out_dir, ignore_errors=True)
    return not out_dir.exists()


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's allocation failures (CPU: DefaultCPUAllocator; CUDA: OutOfMemoryError)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError)
        and ("can't allocate memory" in text or "out of memory" in text.lower())
    )


def check_resume_scene(out_dir: Path, scene: Path) -> None:
    """--resume continues on the capture the run trained on: another one is refused (naming
    both), as it would train on it and overwrite the checkpoint. A moved capture (the old
    folder gone) passes."""
    from nerfcli.data.formats import scene_root
    from nerfcli.training.checkpoint import load_checkpoint

    then = Path(load_checkpoint(out_dir / "ckpt.pt").scene.root)
    try:
        now = scene_root(scene).resolve()
    except NerfError:
        return  # the loader names what is wrong with the scene
    if then.exists() and then.resolve() != now:
        raise NerfError(
            f"--resume: {out_dir} trained on {then}, not {scene}; resume with that scene, or "
            "start a new run on this one with another --out"
        )


def check_free_space(out_dir: Path, state: dict) -> None:
    """Refuse to start when the disk cannot hold the next checkpoint of a model whose
    state_dict is `state` (it is written beside the previous one before replacing it):
    weights, two Adam moments, 1 MB of the rest."""
    weights = sum(t.numel() * t.element_size() for t in state.values())
    needed = 3 * weights + (1 << 20)
    folder = out_dir.absolute()
    while not folder.is_dir() and folder != folder.parent:  # a new run: not created yet
        folder = folder.parent
    if not os.access(folder, os.W_OK):
        return  # read-only: prepare_run_dir names that, more usefully than free space
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise NerfError(
            f"{out_dir}: only {free / 1e6:.1f} MB free but a checkpoint of this model "
            f"needs about {needed / 1e6:.1f} MB; free some space or choose another --out"
        )


def save_with_copies(
    checkpoint: Callable[[], Checkpoint], out_dir: Path, step: int, keep: int
) -> Path:
    """Write ckpt.pt (atomically) and checkpoints/step_XXXXXXX.pt (a hard link to it, or a
    second copy where links fail), keeping the newest `keep` numbered copies (0: all)."""
    latest = save_checkpoint(checkpoint(), out_dir / "ckpt.pt")
    folder = out_dir / "checkpoints"
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"{folder}: cannot create ({exc.strerror or exc})") from None
    numbered = folder / f"step_{step:07d}.pt"
    tmp = folder / f".{numbered.name}.link"
    try:
        if tmp.exists():
            tmp.unlink()
        os.link(latest, tmp)
        os.replace(tmp, numbered)
    except OSError:
        save_checkpoint(checkpoint(), numbered)
    old = sorted(folder.glob("step_*.pt"))
    for stale in old[:-keep] if keep > 0 else []:
        try:
            stale.unlink(missing_ok=True)
        except OSError:
            pass  # an old copy left behind is harmless
    return latest
