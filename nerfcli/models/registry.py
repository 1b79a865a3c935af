"""Models by name: the explicit table the config's `model.name` selects from, and each model's
device/scene profile (nerfcli.models.profiles)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from nerfcli.config import Config, parse_override
from nerfcli.errors import ConfigError, UsageError
from nerfcli.models.base import RadianceModel
from nerfcli.models.nerf import NerfModel
from nerfcli.models.profiles import SCENE_KINDS, nerf_profile, tensorf_profile
from nerfcli.models.tensorf import TensorfModel

SceneBox = np.ndarray | torch.Tensor | None  # [2, 3] lo, hi in the training frame
ModelBuilder = Callable[[Config, SceneBox], RadianceModel]


def _build_nerf(cfg: Config, scene_box: SceneBox) -> RadianceModel:
    return NerfModel(cfg)  # samples each ray over [near, far]: no box


def _build_tensorf(cfg: Config, scene_box: SceneBox) -> RadianceModel:
    return TensorfModel(cfg, scene_box)


MODELS: dict[str, ModelBuilder] = {
    "nerf": _build_nerf,
    "tensorf": _build_tensorf,
}

PROFILES: dict[str, Callable[[str, str], dict]] = {  # (device_type, scene kind) -> overrides
    "nerf": lambda device_type, kind: nerf_profile(device_type),
    "tensorf": tensorf_profile,
}


# Keys of the shared sections a model does not read, with what to set instead: --set on one
# of them is a usage error rather than a silent no-op.
NOT_READ: dict[str, dict[str, str]] = {
    "tensorf": {
        "train.lr": "set model.tensorf.lr_grid (the grids) and model.tensorf.lr_network "
        "(basis and decoder) instead",
        "render.n_samples": "set model.tensorf.step_ratio (sample spacing in voxels) or "
        "model.tensorf.max_samples instead",
        "render.n_importance": "set model.tensorf.colour_samples (colour evaluations per "
        "ray) instead",
        "render.lindisp": "TensoRF samples evenly in its grid; model.tensorf.step_ratio sets "
        "the spacing",
        "render.raw_noise_std": "TensoRF adds no noise to its densities",
        "model.nerf": "model.nerf.* is the classic model's: --model nerf",
    },
    "nerf": {
        "model.tensorf": "model.tensorf.* is TensoRF's: --model tensorf",
    },
}


def check_keys_read(name: str, overrides: Iterable[str]) -> None:
    """UsageError for a --set override (`section.key=value`) that model `name` does not read,
    naming the key and the one to set instead (NOT_READ)."""
    not_read = NOT_READ.get(name, {})
    for text in overrides:
        key = ".".join(_dotted(parse_override(text)))
        for prefix, instead in not_read.items():
            if key == prefix or key.startswith(prefix + "."):
                raise UsageError(f"--set {key}: the {name} model does not read it; {instead}")


def _dotted(tree: dict) -> list[str]:
    """{'train': {'lr': 1e-3}} -> ['train', 'lr'] (one --set holds one key)."""
    key, value = next(iter(tree.items()))
    return [key, *_dotted(value)] if isinstance(value, dict) and len(value) == 1 else [key]


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")


def model_profile(name: str, device_type: str, kind: str = "forward") -> dict:
    """Model-, device- and scene-kind-specific config defaults (a nested dict merged over the
    dataclass defaults and under scene presets, --set and flags). `kind` is one of
    SCENE_KINDS (nerfcli.data.plan.FramePlan.profile_kind): "forward" (in NDC), "object" (a
    box: Blender, LLFF's spherified frame, forward without NDC) or "unbounded" (a surround capture)."""
    _check_name(name)
    if kind not in SCENE_KINDS:
        raise ConfigError(f"unknown scene kind {kind!r}; available: {', '.join(SCENE_KINDS)}")
    return PROFILES[name](device_type, kind)


def build_model(cfg: Config, scene_box: SceneBox = None) -> RadianceModel:
    """The model `cfg.model.name` names. `scene_box` [2, 3] is the Scene's box (None for NDC
    and unbounded scenes); models that store a grid fit it to the box (TensoRF: an explicit
    `model.tensorf.aabb` wins over it)."""
    _check_name(cfg.model.name)
    return MODELS[cfg.model.name](cfg, scene_box)
