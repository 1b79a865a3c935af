"""The plain paths the fast code is tested against (gsplat's `_torch_impl` pattern): plain
functions taking the tensors or the model as arguments, written for clarity, never for speed.
Production code never imports this module; tests check fast == reference in values and
gradients over several batch shapes.

    fast                                   reference here
    encoding.positional_encoding           positional_encoding_reference (a loop)
    TensorfField.density_feature           density_feature_reference (grid_sample per factor)
    TensorfField.density_slices            density_slices_reference (per-sample trilinear)
    TensorfField.appearance                appearance_reference (grid_sample per factor)
    factors.trilinear_gather               trilinear_gather_reference (3D grid_sample)
    losses.total_variation                 total_variation_reference (autograd of slices)
    TensorfModel.render_rays               render_rays_reference (density and colour at
                                           every sample, no z-slices, no quantiles)
    the no-grad NDC render (tensorf/fast)  RenderPolicy(fast=False).render, the training
                                           path (tests/unit/test_tensorf_fast.py)
    factors.appearance_at_depths +         appearance_reference at points on the slices
      read_slices
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nerfcli.data.rays import Rays
from nerfcli.models.tensorf.factors import LINE_AXES, PLANE_AXES
from nerfcli.models.tensorf.model import TensorfModel
from nerfcli.render.composite import (
    RenderResult,
    alpha_from_density,
    composite_weights,
    sample_deltas,
    weights_from_alpha,
)
from nerfcli.render.samplers import sample_points

# ----------------------------------------------------------------------------- encoding


def positional_encoding_reference(x: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """x [..., D] -> [x, sin(2^0 x), cos(2^0 x), ...] [..., D + 2 D num_freqs], as a loop."""
    out = [x]
    for i in range(num_freqs):
        for fn in (torch.sin, torch.cos):
            out.append(fn(x * 2.0**i))
    return torch.cat(out, -1)


# ----------------------------------------------------------------------------- TensoRF factors


def sample_plane(plane: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear plane [1, C, H, W] at coords [..., 2] in [-1, 1] (x -> W, y -> H) -> [..., C]."""
    grid = coords.reshape(1, -1, 1, 2)  # [1, P, 1, 2]
    out = F.grid_sample(plane, grid, mode="bilinear", align_corners=True)  # [1, C, P, 1]
    return out.view(plane.shape[1], -1).t().reshape(*coords.shape[:-1], -1)


def sample_line(line: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Linear line [1, C, L, 1] at coords [...] in [-1, 1] -> [..., C]."""
    return sample_plane(line, torch.stack([torch.zeros_like(coords), coords], -1))


def density_feature_reference(
    planes: list[torch.Tensor], lines: list[torch.Tensor], coords: torch.Tensor
) -> torch.Tensor:
    """sum_m sum_c P_m[c] * L_m[c] at box coords [..., 3] -> [...]: one grid_sample per
    plane and per line."""
    feature = coords.new_zeros(coords.shape[:-1])
    for mode in range(3):
        plane = sample_plane(planes[mode], coords[..., PLANE_AXES[mode]])  # [..., C]
        line = sample_line(lines[mode], coords[..., LINE_AXES[mode]])  # [..., C]
        feature = feature + torch.sum(plane * line, -1)
    return feature


def appearance_reference(
    planes: list[torch.Tensor], lines: list[torch.Tensor], basis: nn.Module, coords: torch.Tensor
) -> torch.Tensor:
    """basis(concat_m P_m * L_m) at box coords [..., 3] -> [..., app_dim]."""
    products = []
    for mode in range(3):
        plane = sample_plane(planes[mode], coords[..., PLANE_AXES[mode]])  # [..., C_m]
        line = sample_line(lines[mode], coords[..., LINE_AXES[mode]])
        products.append(plane * line)
    return basis(torch.cat(products, -1))


def trilinear_gather_reference(volume: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Volume [Rz, Ry, Rx] at coords [..., 3] = (x, y, z) in [-1, 1] -> [...]: one 3D
    grid_sample, border padding standing in for the clamp."""
    grid = coords.reshape(1, 1, 1, -1, 3)
    out = F.grid_sample(
        volume[None, None], grid, mode="bilinear", padding_mode="border", align_corners=True
    )  # [1, 1, 1, 1, P]
    return out.view(coords.shape[:-1])


def total_variation_reference(tensor: torch.Tensor) -> torch.Tensor:
    """mean(dh^2) + mean(dw^2) over the last two axes, plain autograd."""
    total = tensor.new_zeros(())
    if tensor.shape[-2] > 1:
        total = total + torch.mean((tensor[..., 1:, :] - tensor[..., :-1, :]) ** 2)
    if tensor.shape[-1] > 1:
        total = total + torch.mean((tensor[..., :, 1:] - tensor[..., :, :-1]) ** 2)
    return total


# ----------------------------------------------------------------------------- TensoRF model


def _density_at(model: TensorfModel, coords: torch.Tensor) -> torch.Tensor:
    """Density [...] at box coords [..., 3]: 0 outside the box and the alpha mask."""
    flat = coords.reshape(-1, 3)
    field = model.field
    inside = torch.all(flat.abs() <= 1.0, -1) & field.alpha_mask_lookup(flat)  # [P]
    feature = density_feature_reference(
        list(field.density_planes), list(field.density_lines), flat.clamp(-1.0, 1.0)
    )
    return (field.activate_density(feature) * inside).view(coords.shape[:-1])


def density_slices_reference(model: TensorfModel, rays: Rays, t_row: torch.Tensor) -> torch.Tensor:
    """TensorfField.density_slices: density [R, S] at depths t_row [S] along rays [R]."""
    points = rays.origins[:, None] + t_row[None, :, None] * rays.directions[:, None]  # [R, S, 3]
    return _density_at(model, model.field.normalize(points))


def render_rays_reference(
    model: TensorfModel,
    rays: Rays,  # [R]
    near: float,
    far: float,
    train: bool,
    generator: torch.Generator | None = None,
) -> RenderResult:
    """TensorfModel.render_rays the plain way: the same sample depths, then density (0 outside
    the box and the alpha mask) and colour at every sample, one composite."""
    t_vals = model.sample_depths(rays, near, far, train, generator)  # [R, S]
    field = model.field
    coords = field.normalize(sample_points(rays.origins, rays.directions, t_vals))  # [R, S, 3]
    sigma = _density_at(model, coords)  # [R, S]
    weights = weights_from_alpha(alpha_from_density(sigma, sample_deltas(t_vals, rays.directions)))
    features = appearance_reference(
        list(field.app_planes), list(field.app_lines), field.basis, coords.clamp(-1.0, 1.0)
    )  # [R, S, app_dim]
    viewdirs = rays.viewdirs[:, None, :].expand(coords.shape)  # [R, S, 3]
    rgb = field.decoder(features.reshape(-1, features.shape[-1]), viewdirs.reshape(-1, 3))
    # where the density is 0 (outside the box) so is the weight: that colour never counts
    out = composite_weights(weights, rgb.view(coords.shape), t_vals, model.policy.white_bkgd)
    return RenderResult(out.rgb, out.depth, out.disparity, out.opacity)
