"""Models by name: the explicit table the config's `model.name` selects from, each model's
device/scene profile (nerfcli.models.profiles), and the builder that hands a model its own
config section and what it needs of the scene (its box, NDC, background). Which model reads a
--set key is derived from the config section holding it (nerfcli.models.config.check_keys_read,
re-exported here)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from nerfcli.errors import ConfigError
from nerfcli.models.base import RadianceModel
from nerfcli.models.config import Config, check_keys_read
from nerfcli.models.nerf import NerfModel
from nerfcli.models.profiles import SCENE_KINDS, nerf_profile, tensorf_profile
from nerfcli.models.tensorf import TensorfModel

SceneBox = np.ndarray | torch.Tensor | None  # [2, 3] lo, hi in the training frame
ModelBuilder = Callable[[Config, SceneBox], RadianceModel]


def _build_nerf(cfg: Config, scene_box: SceneBox) -> RadianceModel:
    """The classic model samples each ray over [near, far] as the reference; its occupancy
    estimator spans the box only where nothing is seen outside it: an object composited on a
    known background (white or random: the images' alpha says where the object is not). A
    spherified or unbounded capture's box holds the cameras, not the whole visible world."""
    box = scene_box if object_on_known_background(cfg) else None
    return NerfModel(cfg.model.nerf, cfg.data.background, cfg.render.perturb, box)


def object_on_known_background(cfg: Config) -> bool:
    """An object scene whose background is composited (white or random), so nothing outside
    its box is seen."""
    return cfg.data.scene_type == "object" and cfg.data.background in ("white", "random")


def _build_tensorf(cfg: Config, scene_box: SceneBox) -> RadianceModel:
    m = cfg.model.tensorf
    return TensorfModel(m, scene_box, cfg.data.ndc, cfg.data.background, cfg.render.perturb)


MODELS: dict[str, ModelBuilder] = {
    "nerf": _build_nerf,
    "tensorf": _build_tensorf,
}

PROFILES: dict[str, Callable[[str, str], dict]] = {  # (device_type, scene kind) -> overrides
    "nerf": lambda device_type, kind: nerf_profile(device_type),
    "tensorf": tensorf_profile,
}

__all__ = ["MODELS", "PROFILES", "build_model", "check_keys_read", "model_profile"]


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
