"""TensoRF's training loss: photometric MSE plus total-variation and L1 regularisers on the
factors, their weights scaled by the learning-rate schedule's decay (as TensoRF does)."""

from __future__ import annotations

import torch

from nerfcli.models.tensorf.field import TensorfField
from nerfcli.render.composite import RenderResult


class _TotalVariation(torch.autograd.Function):
    """mean(dh^2) + mean(dw^2) over the last two axes, with a hand-written backward: autograd
    of the sliced form allocates a zero tensor of the full plane per slice, 3x slower here."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        diff_h = tensor[..., 1:, :] - tensor[..., :-1, :]  # [..., H-1, W]
        diff_w = tensor[..., :, 1:] - tensor[..., :, :-1]  # [..., H, W-1]
        ctx.save_for_backward(diff_h, diff_w)
        ctx.shape = tensor.shape
        total = tensor.new_zeros(())
        if diff_h.numel():
            total = total + diff_h.pow(2).mean()
        if diff_w.numel():
            total = total + diff_w.pow(2).mean()
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor) -> torch.Tensor:
        diff_h, diff_w = ctx.saved_tensors
        grad = grad_total.new_zeros(ctx.shape)
        if diff_h.numel():
            step_h = diff_h * (2.0 * grad_total / diff_h.numel())
            grad[..., 1:, :] += step_h
            grad[..., :-1, :] -= step_h
        if diff_w.numel():
            step_w = diff_w * (2.0 * grad_total / diff_w.numel())
            grad[..., :, 1:] += step_w
            grad[..., :, :-1] -= step_w
        return grad


def total_variation(tensor: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbours along the last two axes of tensor [..., H, W]
    (a line [1, C, L, 1] only has the first of those). Zero exactly when the tensor is constant
    along them."""
    return _TotalVariation.apply(tensor)


def tv_loss(field: TensorfField) -> tuple[torch.Tensor, torch.Tensor]:
    """(density, appearance) total variation summed over the three planes."""
    density = sum(total_variation(p) for p in field.density_planes)
    appearance = sum(total_variation(p) for p in field.app_planes)
    return density, appearance


def l1_loss(field: TensorfField) -> torch.Tensor:
    """Mean absolute density factor value (sparsity)."""
    total = sum(torch.mean(p.abs()) for p in field.density_planes)
    return total + sum(torch.mean(line.abs()) for line in field.density_lines)


def tensorf_loss(
    field: TensorfField,
    result: RenderResult,
    target: torch.Tensor,  # [R, 3]
    decay: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """MSE + decay * (TV and L1 terms at their configured weights); the scalars to log."""
    mse = torch.mean((result.rgb - target) ** 2)
    loss = mse
    scalars = {"mse": float(mse.detach())}
    m = field.cfg
    if m.tv_weight_density > 0 or m.tv_weight_app > 0:
        tv_density, tv_app = tv_loss(field)
        loss = loss + decay * (m.tv_weight_density * tv_density + m.tv_weight_app * tv_app)
        scalars["tv_density"] = float(tv_density.detach())
        scalars["tv_app"] = float(tv_app.detach())
    if m.l1_weight > 0:
        l1 = l1_loss(field)
        loss = loss + decay * m.l1_weight * l1
        scalars["l1"] = float(l1.detach())
    return loss, scalars
