"""Where a camera ray meets the model's surface: the median depth of the ray's termination
distribution (where the transmittance has fallen half way from 1 to what passes the whole ray:
T = 1/2 for an opaque ray), and the density the field has there.

`nerf export mesh` keeps the vertices some training view has at its median depth
(export/visibility), and `nerf export points --depth median` puts the points there: a little
density in front of or behind the surface (a floater) pulls the expected depth (sum of t times
the weights) off the surface by its weight times its distance, not the median.
The mesh's default level is the density the field has at those crossings (over a sample of
the training rays): the level set then passes where the training views see the surfaces.

The ray is sampled as the model renders it (TensoRF: its own sample depths; the classic NeRF:
n_samples + n_importance evenly spaced), with the render's quadrature: density constant over
each interval, alpha = 1 - exp(-density * length).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nerfcli.data.rays import Rays
from nerfcli.export.field_query import density_at
from nerfcli.render.composite import alpha_from_density, sample_deltas, transmittance


def sample_depths(model, rays: Rays, near: float, far: float) -> torch.Tensor:
    """Sample depths t [R, S] along rays [R], as the model's (non-jittered) render takes them."""
    if hasattr(model, "sample_depths"):
        return model.sample_depths(rays, near, far, train=False)
    count = int(model.cfg.n_samples) + int(model.cfg.n_importance)
    row = torch.linspace(near, far, max(count, 2), device=rays.origins.device)
    return row.expand(len(rays), -1)


def _densities(model, rays: Rays, t_vals: torch.Tensor) -> torch.Tensor:
    """Density [R, S] at the samples; NDC rays of a TensoRF read it slice by slice, as the
    render does (one z slice of the grid per sample depth, shared by the rays)."""
    policy = getattr(model, "policy", None)
    field = getattr(model, "field", None)
    if policy is not None and field is not None and policy.shares_depth(rays):
        return field.density_slices(rays, t_vals[0])
    num_rays, num_samples = t_vals.shape
    points = rays.origins[:, None, :] + t_vals[..., None] * rays.directions[:, None, :]
    sigma = density_at(model, points.reshape(-1, 3)).view(num_rays, num_samples)  # [R, S]
    return sigma.to(t_vals.device)


@torch.no_grad()
def crossings(
    model, rays: Rays, near: float, far: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per ray [R]: the median depth t (NaN where the ray meets no density), the density at
    that sample (0 where none) and the ray's opacity."""
    t_vals = sample_depths(model, rays, near, far)  # [R, S]
    sigma = _densities(model, rays, t_vals)  # [R, S]
    deltas = sample_deltas(t_vals, rays.directions)  # [R, S]
    before = transmittance(alpha_from_density(sigma, deltas))  # [R, S] T before each sample
    after = before * torch.exp(-sigma * deltas)  # [R, S]
    opacity = 1.0 - after[:, -1]  # [R]
    level = 1.0 - 0.5 * opacity  # [R] the transmittance at the median
    crossed = after <= level[:, None]  # [R, S]
    found = crossed.any(-1) & (opacity > 1e-6)  # [R]
    index = crossed.to(torch.int8).argmax(-1)  # [R] first sample past the level
    take = index[:, None]
    t_start = t_vals.gather(1, take)[:, 0]  # [R]
    sigma_here = sigma.gather(1, take)[:, 0]  # [R]
    t_before = before.gather(1, take)[:, 0]  # [R]
    speed = torch.linalg.norm(rays.directions, dim=-1)  # [R] ray units per t
    # inside the interval T(t) = T_before * exp(-sigma * |d| * (t - t_start))
    offset = torch.log(torch.maximum(t_before, level) / level)
    offset = offset / (sigma_here * speed).clamp(min=1e-12)
    step = deltas.gather(1, take)[:, 0] / speed.clamp(min=1e-12)  # [R] interval length in t
    depth = t_start + torch.minimum(offset, step)
    nan = torch.full_like(depth, math.nan)
    zero = torch.zeros_like(depth)
    return torch.where(found, depth, nan), torch.where(found, sigma_here, zero), opacity


def rays_in_chunks(model, rays: Rays, near: float, far: float, chunk: int):
    """crossings() over a flat bundle of rays [R], `chunk` rays at a time."""
    parts = [
        [value.cpu() for value in crossings(model, rays[start : start + chunk], near, far)]
        for start in range(0, len(rays), chunk)
    ]
    if not parts:
        return torch.zeros(0), torch.zeros(0), torch.zeros(0)
    return tuple(torch.cat(values) for values in zip(*parts))


def surface_level(model, scene, rays_per_view: int, chunk: int, device, seed: int = 0) -> float:
    """The median of the density at the median depth of `rays_per_view` random pixels of every
    training view, over the pixels at least half opaque; NaN when there are none."""
    from nerfcli.data.rays import camera_rays

    views = scene.i_train or list(range(scene.num_views))
    generator = np.random.default_rng(seed)
    found = []
    for view in views:
        camera = scene.camera(view)
        rays = camera_rays(camera, device=device).reshape(-1)  # [H*W]
        pick = generator.choice(len(rays), min(rays_per_view, len(rays)), replace=False)
        _, density, opacity = rays_in_chunks(
            model, rays[torch.as_tensor(pick, device=device)], camera.near, camera.far, chunk
        )
        found.append(density[(opacity >= 0.5) & (density > 0)])
    values = torch.cat(found)
    return float(values.median()) if len(values) else math.nan
