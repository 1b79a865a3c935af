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

import numpy as np
import torch

from nerfcli.config import Config, config_from_checkpoint_dict, to_dict
from nerfcli.errors import CheckpointError, ConfigError
from nerfcli.fsutil import atomic_write

FORMAT_VERSION = 1


@dataclass
class SceneMeta:
    """What a checkpoint knows about the scene it was trained on (training frame)."""

    root: str
    height: int
    width: int
    focal: float
    factor: int
    ndc: bool
    near: float
    far: float
    spherify: bool
    scale: float
    transform: np.ndarray  # [4, 4]
    c2w: np.ndarray  # [N, 3, 4] every view
    bounds: np.ndarray  # [N, 2]
    i_train: list[int]
    i_test: list[int]
    render_poses: np.ndarray  # [F, 3, 4]
    image_names: list[str] = field(default_factory=list)
    stored_height: int = 0
    stored_width: int = 0
    stored_focal: float = 0.0

    @classmethod
    def from_scene(cls, scene, ndc: bool) -> SceneMeta:
        near, far = scene.near_far(ndc)
        return cls(
            root=str(Path(scene.root).resolve()),
            height=scene.height,
            width=scene.width,
            focal=scene.focal,
            factor=scene.factor,
            ndc=ndc,
            near=near,
            far=far,
            spherify=scene.spherify,
            scale=scene.scale,
            transform=np.asarray(scene.transform, dtype=np.float64),
            c2w=np.asarray(scene.c2w, dtype=np.float32),
            bounds=np.asarray(scene.bounds, dtype=np.float32),
            i_train=list(scene.i_train),
            i_test=list(scene.i_test),
            render_poses=np.asarray(scene.render_poses, dtype=np.float32),
            image_names=[Path(f).name for f in scene.image_files],
            stored_height=scene.stored_height,
            stored_width=scene.stored_width,
            stored_focal=scene.stored_focal,
        )

    def to_dict(self) -> dict:
        out = {}
        for key, value in self.__dict__.items():
            out[key] = (
                torch.from_numpy(np.ascontiguousarray(value))
                if isinstance(value, np.ndarray)
                else value
            )
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SceneMeta:
        kwargs = {}
        for key in cls.__dataclass_fields__:
            if key not in data:
                continue
            value = data[key]
            kwargs[key] = value.numpy() if isinstance(value, torch.Tensor) else value
        return cls(**kwargs)

    @property
    def K(self) -> np.ndarray:  # noqa: N802
        from nerfcli.data.formats.llff import intrinsics

        return intrinsics(self.height, self.width, self.focal)


@dataclass
class Checkpoint:
    config: Config
    model_state: dict[str, torch.Tensor]
    scene: SceneMeta
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
        "scene": ckpt.scene.to_dict(),
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
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable nerfcli checkpoint ({reason[:160]}); the file is truncated "
            "or corrupt, use an earlier one from checkpoints/"
        ) from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a nerfcli checkpoint (no format_version)")
    version = payload["format_version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {_one_line(version, 40)} is not supported by this nerfcli "
            f"(format {FORMAT_VERSION}); use the nerfcli version that wrote it"
        )
    try:
        config = config_from_checkpoint_dict(payload["config"])
        scene = SceneMeta.from_dict(payload["scene"])
        model_state = payload["model"]
        step = payload["step"]
        optimizer_state = payload.get("optimizer")
        rng_state = payload.get("rng")
        rng_state = {} if rng_state is None else rng_state
        train_seconds = payload.get("train_seconds", 0.0)
        _check_contents(scene, model_state, step, optimizer_state, rng_state, train_seconds)
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


def _one_line(value: Any, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_contents(
    scene: SceneMeta,
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
    for name in ("height", "width", "factor", "stored_height", "stored_width"):
        if not is_int(getattr(scene, name)) or getattr(scene, name) < 0:
            raise bad(f"scene.{name}: expected a whole number")
    if scene.height < 1 or scene.width < 1:
        raise bad("scene.height/width: must be at least 1")
    for name in ("focal", "near", "far", "scale", "stored_focal"):
        if not is_real(getattr(scene, name)) or not np.isfinite(getattr(scene, name)):
            raise bad(f"scene.{name}: expected a finite number")
    if not scene.focal > 0 or not scene.near < scene.far:
        raise bad("scene: need focal > 0 and near < far")
    if not isinstance(scene.ndc, bool) or not isinstance(scene.spherify, bool):
        raise bad("scene.ndc/spherify: expected true or false")
    if not isinstance(scene.root, str):
        raise bad("scene.root: expected a string")
    arrays = {"transform": (4, 4), "c2w": (-1, 3, 4), "bounds": (-1, 2), "render_poses": (-1, 3, 4)}
    for name, shape in arrays.items():
        value = getattr(scene, name)
        if (
            not isinstance(value, np.ndarray)
            or value.dtype.kind != "f"
            or value.ndim != len(shape)
            or any(want not in (-1, got) for want, got in zip(shape, value.shape))
        ):
            raise bad(f"scene.{name}: expected a float array shaped {shape}")
    views = len(scene.c2w)
    if views < 1 or len(scene.bounds) != views:
        raise bad("scene.c2w/bounds: expected one pose and one bound pair per view")
    for name in ("i_train", "i_test"):
        value = getattr(scene, name)
        if not isinstance(value, list) or not all(is_int(v) and 0 <= v < views for v in value):
            raise bad(f"scene.{name}: expected a list of view numbers below {views}")
    if not isinstance(scene.image_names, list) or not all(
        isinstance(v, str) for v in scene.image_names
    ):
        raise bad("scene.image_names: expected a list of strings")


def restore_model(ckpt: Checkpoint, device: str | torch.device = "cpu"):
    """Build the checkpoint's model and load its weights (eval mode)."""
    from nerfcli.models import build_model

    model = build_model(ckpt.config)
    try:
        model.adapt_to_state_dict(ckpt.model_state)
        model.load_state_dict(ckpt.model_state)
    except CheckpointError as exc:  # from the model, which does not know the file
        if ckpt.path is None or str(ckpt.path) in str(exc):
            raise
        raise CheckpointError(f"{ckpt.path}: {exc}") from None
    except (RuntimeError, ValueError, LookupError, TypeError, AttributeError) as exc:
        first = _one_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        where = f"{ckpt.path}: " if ckpt.path else ""
        raise CheckpointError(
            f"{where}weights do not fit model {ckpt.config.model.name!r} ({first})"
        ) from None
    return model.to(device).eval()
