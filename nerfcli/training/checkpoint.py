"""Self-describing checkpoints, written atomically and loaded with `weights_only=True`.

A checkpoint holds everything `render-video` and `eval` need: the format version, the resolved
config, the model name and weights, the optimizer, the step, the random streams and the scene
metadata (image size, intrinsics, rescale/recenter transform, near/far, train/test poses, render
path). Only tensors, numbers, strings, lists and dicts are stored, so loading never unpickles code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nerfcli.config import to_dict
from nerfcli.data.formats import upgrade_data_section
from nerfcli.data.scene import Scene
from nerfcli.errors import CheckpointError, ConfigError, DataError
from nerfcli.fsutil import atomic_write
from nerfcli.models.config import Config, config_from_checkpoint_dict
from nerfcli.training.scene_record import scene_from_record, scene_record, upgrade_v1

# 2: the format-neutral Scene (per-view K, splits, kind, background, pixel_center, distortion,
# world_from_file); 1 (LLFF-only SceneMeta, data.white_bkgd) is upgraded on load.
FORMAT_VERSION = 2


@dataclass
class Checkpoint:
    config: Config
    model_state: dict[str, torch.Tensor]
    scene: Scene  # metadata only: no images
    step: int
    optimizer_state: dict | None = None
    rng_state: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0
    path: Path | None = None


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """Write atomically: a temp file in the same folder, fsync, then rename over `path`.

    A process killed at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "config": to_dict(ckpt.config),
        "model_name": ckpt.config.model.name,
        "model": ckpt.model_state,
        "optimizer": ckpt.optimizer_state,
        "step": int(ckpt.step),
        "rng": ckpt.rng_state,
        "scene": scene_record(ckpt.scene),
        "train_seconds": float(ckpt.train_seconds),
    }
    writer = None
    try:
        with atomic_write(path, suffix=".tmp", durable=True) as tmp:
            with open(tmp, "wb") as handle:
                writer = _ErrorRecordingWriter(handle)
                torch.save(payload, writer)
                handle.flush()
                os.fsync(handle.fileno())  # a late ENOSPC/EIO surfaces here, not after rename
    except (OSError, RuntimeError) as exc:
        # torch.save reports a failed write (disk full, quota, file too large) as a
        # RuntimeError ("unexpected pos ..."); the OSError the writer saw names the real cause.
        cause = writer.error if writer is not None and writer.error is not None else exc
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        raise CheckpointError(
            f"{path}: cannot write checkpoint ({reason.splitlines()[0][:160]}); the previous "
            "checkpoint, if any, is untouched: free space or fix the folder, then --resume"
        ) from None
    return path


class _ErrorRecordingWriter:
    """File-like wrapper for torch.save that remembers the first OSError of a write."""

    def __init__(self, handle):
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint; every failure is a one-line CheckpointError."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "ckpt.pt"
        if not candidate.is_file():
            raise CheckpointError(f"{path}: no ckpt.pt in this folder; point at a checkpoint file")
        path = candidate
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; train one with `nerf train SCENE`")
    _check_torch_file(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path}: not a readable nerfcli checkpoint: a torch file holding Python "
                "objects besides tensors (nerfcli never unpickles code); point at a run's ckpt.pt"
            ) from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable nerfcli checkpoint ({reason[:160]}); the file is truncated "
            "or corrupt, use an earlier one from checkpoints/"
        ) from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a nerfcli checkpoint (no format_version)")
    version = payload["format_version"]
    if type(version) is int and version == 1:
        payload = upgrade_v1(payload)
        version = payload["format_version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {_one_line(version, 40)} is not supported by this nerfcli "
            f"(format {FORMAT_VERSION}); use the nerfcli version that wrote it"
        )
    try:
        config = config_from_checkpoint_dict(_upgraded_config(payload["config"]))
        scene = scene_from_record(payload["scene"])
        model_state = payload["model"]
        step = payload["step"]
        optimizer_state = payload.get("optimizer")
        rng_state = payload.get("rng")
        rng_state = {} if rng_state is None else rng_state
        train_seconds = payload.get("train_seconds", 0.0)
        _check_contents(model_state, step, optimizer_state, rng_state, train_seconds)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: stored config is invalid ({_one_line(exc)})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(
            f"{path}: checkpoint is missing or has a bad {_one_line(exc)}"
        ) from None
    return Checkpoint(
        config=config,
        model_state=model_state,
        scene=scene,
        step=step,
        optimizer_state=optimizer_state,
        rng_state=rng_state,
        train_seconds=float(train_seconds),
        path=path,
    )


def _upgraded_config(data: Any) -> Any:
    """A stored config with its data section as this version reads it (the formats' own
    sections: nerfcli.data.formats.upgrade_data_section)."""
    if not isinstance(data, dict) or "data" not in data:
        return data
    return {**data, "data": upgrade_data_section(data["data"])}


def _check_torch_file(path: Path) -> None:
    """A checkpoint is a torch zip archive: anything else is named for what it is."""
    import zipfile

    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise CheckpointError(f"{path}: empty file, not a checkpoint; point at a run's ckpt.pt")
    if head[:2] != b"PK":
        raise CheckpointError(
            f"{path}: not a checkpoint (not a torch file); point at a run's ckpt.pt"
        )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: a torch file cut short (truncated or corrupt); use an earlier one from "
            "checkpoints/"
        )


def _one_line(value: Any, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_contents(
    model_state: Any,
    step: Any,
    optimizer_state: Any,
    rng_state: Any,
    train_seconds: Any,
) -> None:
    """Types and shapes of what eval, render-video and --resume use; ValueError names the
    first bad entry (a damaged or hand-edited checkpoint must not fail later with a traceback)."""

    def bad(what: str) -> ValueError:
        return ValueError(f"{what} (the file is damaged or was not written by nerfcli)")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def is_real(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not isinstance(model_state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model_state.items()
    ):
        raise bad("model: expected a dict of named tensors")
    if not is_int(step) or step < 0:
        raise bad(f"step: expected a whole number >= 0, got {str(step)[:40]}")
    if optimizer_state is not None and not isinstance(optimizer_state, dict):
        raise bad("optimizer: expected a dict")
    if not isinstance(rng_state, dict) or not all(
        isinstance(v, torch.Tensor) for v in rng_state.values()
    ):
        raise bad("rng: expected a dict of tensors")
    if not is_real(train_seconds):
        raise bad("train_seconds: expected a number")


def restore_model(ckpt: Checkpoint, device: str | torch.device = "cpu"):
    """Build the checkpoint's model and load its weights (eval mode)."""
    from nerfcli.models.registry import build_model

    where = f"{ckpt.path}: " if ckpt.path else ""
    try:
        model = build_model(ckpt.config, scene_box=ckpt.scene.scene_box)
    except (ConfigError, DataError) as exc:  # e.g. a damaged model name or box
        raise CheckpointError(
            f"{where}stored config does not build a model ({_one_line(exc)})"
        ) from None
    try:
        model.adapt_to_state_dict(ckpt.model_state)
        model.load_state_dict(ckpt.model_state)
    except CheckpointError as exc:  # from the model, which does not know the file
        if ckpt.path is None or str(ckpt.path) in str(exc):
            raise
        raise CheckpointError(f"{ckpt.path}: {exc}") from None
    except (RuntimeError, ValueError, LookupError, TypeError, AttributeError) as exc:
        first = _one_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise CheckpointError(
            f"{where}weights do not fit model {ckpt.config.model.name!r} ({first})"
        ) from None
    return model.to(device).eval()
