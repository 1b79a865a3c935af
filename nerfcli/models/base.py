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

    def adapt_to_state_dict(self, state: dict) -> None:
        """Resize parameters/buffers so `state` loads (models whose shapes change in training)."""
