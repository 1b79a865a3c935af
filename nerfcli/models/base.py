"""The interface every radiance model implements.

A model owns its fields (networks mapping (xyz, dirs) -> (sigma, rgb)) and composes the pure
functions of nerfcli.render into `render_rays`. The trainer, checkpoints, eval and render-video
see only this interface, so every model shares them.
"""

from __future__ import annotations

import torch
from torch import nn

from nerfcli.data.rays import Rays
from nerfcli.render.composite import RenderResult


class RadianceModel(nn.Module):
    """Interface every model implements."""

    name: str = ""

    def render_rays(
        self,
        rays: Rays,  # [R]
        near: float,
        far: float,
        train: bool,
        generator: torch.Generator | None = None,
    ) -> RenderResult:
        """Render a batch of rays [R]. `train` enables sampling jitter and density noise."""
        raise NotImplementedError

    def loss(
        self,
        result: RenderResult,
        target: torch.Tensor,  # [R, 3]
        decay: float,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss for a batch; the second value holds scalars to log (floats).

        `decay` is the learning-rate schedule's current factor (lr / initial lr, the trainer's
        one schedule): models whose regularisers decay with the learning rate scale them by it.
        """
        mse = torch.mean((result.rgb - target) ** 2)
        return mse, {"mse": float(mse.detach())}

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer parameter groups; each may carry its own 'lr'."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def before_step(self, step: int) -> bool:
        """Called before each training step; True when the parameter set changed (for example
        a grid was upsampled) and the optimizer must be rebuilt."""
        return False

    def after_step(self, step: int) -> None:
        """Called after each optimizer step with the number of steps taken (`step`, on every
        rank alike; the schedule's position of before_step jumps on a time schedule, this does
        not)."""

    def prepare_renders(self, pixels: int) -> None:
        """A hint before no-grad renders of about `pixels` pixels with these weights (an eval,
        a video): a model may build now, on every core, what pays for itself over them."""

    def ray_filter_key(self) -> object | None:
        """None while every training ray can change the model (the default); else a value that
        changes whenever `useful_rays` would answer differently (the trainer draws batches
        only from the rays it keeps, and asks again on a new key)."""
        return None

    def useful_rays(self, rays: Rays, near: float, far: float) -> torch.Tensor:
        """Which training rays [P] (bool) can change the model now: a ray left out must get
        no gradient (asked only while ray_filter_key is not None)."""
        raise NotImplementedError

    def adapt_to_state_dict(self, state: dict) -> None:
        """Resize parameters/buffers so `state` loads (models whose shapes change in training)."""
