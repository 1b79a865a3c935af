"""Compositing packed samples: the kept samples of a ray bundle as flat arrays sorted by ray
(what `nerfcli.render.march` returns), composited without a [R, M] table.

Every per-ray quantity comes from running sums over the whole bundle: the optical depth before
each sample is a float64 cumulative sum less its value where the sample's ray starts (each
sample's optical depth capped at TAU_CAP, past which exp(-tau) is 0 in float32 anyway, so the
running sum stays exact to ~1e-8 over any bundle); a ray's colour quantiles are one
searchsorted over the key 2 * ray + cdf, increasing over the bundle. The rule is the TensoRF
render policy's (`_colour_by_quantiles` + `composite_grouped` over all S samples): quantile k's
colour at the first sample whose cdf reaches (k + 0.5) / K of the ray's opacity, sample s in
group floor(K * (cdf_s - w_s / 2) / opacity), each group weighted by its samples' weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nerfcli.render.composite import Composite

# Optical depth a sample adds to a running sum at most (exp(-1e3) is 0 in float32).
TAU_CAP = 1e3

ColourFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # ray [P], t [P] -> rgb [P, 3]


@dataclass
class Packed:
    """Kept samples, sorted by ray then sample: ray [V], sample [V] (index into S), tau [V]
    (sigma * delta, the sample's optical depth)."""

    ray: torch.Tensor
    sample: torch.Tensor
    tau: torch.Tensor


def optical_before(ray: torch.Tensor, tau: torch.Tensor, num_rays: int) -> torch.Tensor:
    """The optical depth [V] (float64) of each sample's ray before it, for samples sorted by
    ray with optical depths tau [V] (each capped at TAU_CAP)."""
    capped = tau.clamp(max=TAU_CAP).double()  # [V]
    running = torch.cumsum(capped, 0) - capped  # [V] exclusive, over the bundle
    if len(ray) == 0:
        return running
    counts = torch.bincount(ray, minlength=num_rays)  # [R]
    starts = torch.cumsum(counts, 0) - counts  # [R]
    return running - running.index_select(0, starts.clamp(max=len(ray) - 1).index_select(0, ray))


def composite_packed(
    packed: Packed,
    t_vals: torch.Tensor,  # [R, S]
    count: int,  # K colour quantiles per ray
    colour_fn: ColourFn,
    white_bkgd: bool,
) -> tuple[Composite, int]:
    """The composite [R] of the kept samples (weights [V], packed), colour evaluated once per
    distinct quantile sample of each ray with any opacity; and how many colours were
    evaluated."""
    num_rays = t_vals.shape[0]
    ray, tau = packed.ray, packed.tau
    before = optical_before(ray, tau, num_rays)  # [V] float64
    after = before + tau.clamp(max=TAU_CAP).double()  # [V]
    trans_before, trans_after = torch.exp(-before), torch.exp(-after)  # [V]
    weights = (trans_before - trans_after).float()  # [V] T_{s-1} - T_s
    depths = t_vals.take(ray * t_vals.shape[1] + packed.sample)  # [V]
    opacity = t_vals.new_zeros(num_rays).index_add_(0, ray, weights)  # [R]
    depth = t_vals.new_zeros(num_rays).index_add_(0, ray, weights * depths)  # [R]
    total = opacity.clamp(min=1e-10)  # [R]
    rgb, coloured = _quantile_colours(
        ray, 1.0 - trans_after, weights, depths, opacity, total, count, colour_fn
    )
    disparity = 1.0 / torch.clamp(depth / total, min=1e-10)
    if white_bkgd:
        rgb = rgb + (1.0 - opacity[:, None])
    return Composite(rgb, depth, disparity, opacity, weights), coloured


def _quantile_colours(
    ray: torch.Tensor,  # [V] sorted
    cdf: torch.Tensor,  # [V] float64, 1 - T after each sample (per ray, non-decreasing)
    weights: torch.Tensor,  # [V]
    depths: torch.Tensor,  # [V]
    opacity: torch.Tensor,  # [R]
    total: torch.Tensor,  # [R] opacity clamped away from 0
    count: int,
    colour_fn: ColourFn,
) -> tuple[torch.Tensor, int]:
    """rgb [R, 3] = sum_k group weight_k * colour at quantile k (module docstring); colours
    evaluated."""
    num_rays, device = len(opacity), opacity.device
    if len(ray) == 0:
        return opacity.new_zeros(num_rays, 3), 0
    # groups: each sample's mass midpoint in K equal parts of its ray's opacity
    middle = (cdf.float() - 0.5 * weights) / total.index_select(0, ray)  # [V]
    group = torch.clamp((middle * count).long(), 0, count - 1)  # [V]
    group_weights = opacity.new_zeros(num_rays * count)  # [R * K]
    group_weights.index_add_(0, ray * count + group, weights)
    # quantile k of ray r: the first sample whose key 2 r + cdf reaches 2 r + (k + 0.5) / K
    # of the opacity (the key increases over the bundle), kept inside the ray
    key = 2.0 * ray.double() + cdf  # [V]
    fractions = (torch.arange(count, device=device, dtype=torch.float64) + 0.5) / count
    rays = torch.arange(num_rays, device=device)
    targets = 2.0 * rays.double()[:, None] + fractions[None] * total.double()[:, None]  # [R, K]
    counts = torch.bincount(ray, minlength=num_rays)  # [R]
    ends = torch.cumsum(counts, 0) - 1  # [R] each ray's last sample
    chosen = torch.searchsorted(key, targets.view(-1))  # [R * K]
    chosen = torch.minimum(chosen, ends.repeat_interleave(count))  # [R * K]
    # one colour per distinct sample of a ray with opacity (equal quantiles are neighbours)
    first = torch.ones_like(chosen, dtype=torch.bool)  # [R * K]
    torch.ne(chosen[1:], chosen[:-1], out=first[1:])
    first &= (opacity > 0).repeat_interleave(count)
    picked = torch.nonzero(first).squeeze(1)  # [U]
    sample = chosen.index_select(0, picked)  # [U]
    colour = colour_fn(ray.index_select(0, sample), depths.index_select(0, sample))  # [U, 3]
    source = torch.cumsum(first, 0) - 1  # [R * K] the last distinct pick at or before
    colours = colour.new_zeros(max(len(colour), 1), 3)
    colours[: len(colour)] = colour
    per_quantile = colours.index_select(0, source.clamp(min=0)).view(num_rays, count, 3)
    per_quantile = per_quantile * (opacity > 0)[:, None, None]
    rgb = torch.sum(group_weights.view(num_rays, count, 1) * per_quantile, 1)  # [R, 3]
    return rgb, len(picked)
