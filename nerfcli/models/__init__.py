"""Radiance models behind one interface, built by name through an explicit registry.

A model owns its fields (networks mapping (xyz, dirs) -> (sigma, rgb)) and composes the pure
functions of nerfcli.render.composite into `render_rays`. The trainer, checkpoints, eval and render-video
only see this interface, so every model shares them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nerfcli.config import Config
from nerfcli.data.rays import Rays
from nerfcli.errors import ConfigError
from nerfcli.render.composite import RenderResult


class RadianceModel(nn.Module):
    """Interface every model implements."""

    name: str = ""

    def render_rays(
        self,
        rays: Rays,
        near: float,
        far: float,
        train: bool,
        generator: torch.Generator | None = None,
    ) -> RenderResult:
        """Render a batch of rays [R]. `train` enables sampling jitter and density noise."""
        raise NotImplementedError

    def loss(
        self, result: RenderResult, target: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss for a batch; the second value holds scalars to log (floats)."""
        mse = torch.mean((result.rgb - target) ** 2)
        return mse, {"mse": float(mse.detach())}

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups; each may carry its own 'lr'."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def before_step(self, step: int) -> bool:
        """Called before each training step; True when the parameter set changed (for example
        a grid was upsampled) and the optimizer must be rebuilt."""
        return False

    def adapt_to_state_dict(self, state: dict) -> None:
        """Resize parameters/buffers so `state` loads (models whose shapes change in training)."""

    def scene_bounds(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None


ModelBuilder = Callable[[Config], RadianceModel]


def _build_nerf(cfg: Config) -> RadianceModel:
    from nerfcli.models.nerf import NerfModel

    return NerfModel(cfg)


def _build_tensorf(cfg: Config) -> RadianceModel:
    from nerfcli.models.tensorf import TensorfModel

    return TensorfModel(cfg)


MODELS: dict[str, ModelBuilder] = {
    "nerf": _build_nerf,
    "tensorf": _build_tensorf,
}


def model_profile(name: str, device_type: str, ndc: bool = True) -> dict:
    """Model- and device-specific config defaults (a nested dict merged over the dataclass
    defaults and under scene presets, --set and flags). The classic model's defaults are the
    reference nerf-pytorch settings; its profile only changes how the work is chunked."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    if name == "tensorf":
        from nerfcli.models.tensorf import device_profile

        return device_profile(device_type, ndc)
    from nerfcli.models.nerf import device_profile as nerf_profile

    return nerf_profile(device_type)


def build_model(cfg: Config) -> RadianceModel:
    try:
        builder = MODELS[cfg.model.name]
    except KeyError:
        raise ConfigError(
            f"unknown model {cfg.model.name!r}; available: {', '.join(sorted(MODELS))}"
        ) from None
    return builder(cfg)
