"""Self-describing checkpoints, written atomically and loaded with `weights_only=True`.

A checkpoint holds everything `render-video` and `eval` need: the format version, the resolved
config, the model name and weights, the optimizer, the step, the random streams and the scene
metadata (image size, intrinsics, rescale/recenter transform, near/far, train/test poses, render
path). Only tensors, numbers, strings, lists and dicts are stored, so loading never unpickles code.
"""

from __future__ import annotations

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
        from nerfcli.llff import intrinsics

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
    try:
        with atomic_write(path, suffix=".tmp", durable=True) as tmp:
            with open(tmp, "wb") as handle:
                torch.save(payload, handle)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write checkpoint ({exc.strerror or exc})") from None
    return path


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
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version} is not supported by this nerfcli "
            f"(format {FORMAT_VERSION}); use the nerfcli version that wrote it"
        )
    try:
        config = config_from_checkpoint_dict(payload["config"])
        scene = SceneMeta.from_dict(payload["scene"])
        model_state = payload["model"]
        step = int(payload["step"])
        if not isinstance(model_state, dict):
            raise TypeError("model state is not a dict")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: stored config is invalid ({exc})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: checkpoint is missing or has a bad {exc}") from None
    return Checkpoint(
        config=config,
        model_state=model_state,
        scene=scene,
        step=step,
        optimizer_state=payload.get("optimizer"),
        rng_state=payload.get("rng") or {},
        train_seconds=float(payload.get("train_seconds", 0.0)),
        path=path,
    )


def restore_model(ckpt: Checkpoint, device: str | torch.device = "cpu"):
    """Build the checkpoint's model and load its weights (eval mode)."""
    from nerfcli.models import build_model

    model = build_model(ckpt.config)
    model.adapt_to_state_dict(ckpt.model_state)
    try:
        model.load_state_dict(ckpt.model_state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        where = f"{ckpt.path}: " if ckpt.path else ""
        raise CheckpointError(
            f"{where}weights do not fit model {ckpt.config.model.name!r} ({first})"
        ) from None
    return model.to(device).eval()
