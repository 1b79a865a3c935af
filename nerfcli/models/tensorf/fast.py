"""The no-grad render of NDC rays (eval, previews, videos): the image `RenderPolicy.render`
makes, in fewer passes over the samples. Its plain counterpart is `RenderPolicy.render` itself
(the path training takes); tests/unit/test_tensorf_fast.py compares the two.

NDC rays share the z of every sample, so the density of sample s is a bilinear read of the
cached z-slice s (`TensorfField.slice_stack`), as in training. Then, per ray [R, S]:
- optical depth c_s = sum_{j <= s} sigma_j delta_j (one cumsum), transmittance T_s = exp(-c_s),
  weights w_s = T_{s-1} - T_s and cdf_s = 1 - T_s: `weights_from_alpha` without the
  per-sample alpha, the cumulative product and a second cumulative sum;
- the colour quantiles and the group weights of `_colour_by_quantiles` / `composite_grouped`
  by binary search on each ray's cdf (the groups are runs of samples) instead of per-sample
  group indices and a scatter;
- colour from the field's baked appearance slices once they pay (`TensorfField.
  appearance_table`, half precision: two reads of 2 x 27 features per colour instead of 6
  grid_sample reads of 72 channels and the basis product), and the decoder in blocks of rows
  that stay in cache.
One 504 x 378 fern frame, 1 core: 0.80 s against 1.75 s for the plain path at 320 x 320,
0.93 s against 1.92 s at 448 x 448 (CPU time; the bake, 1.8 s and 3.9 s once, not counted).
A torch.compile of the per-sample chain: 4.4 against 7.8 ms a chunk after a 99 s compile:
not used. Measured and left out: early ray termination (fern's rays
keep T > 1e-4 to their last sample: 0.3% of the samples skipped, no gain) and skipping empty
blocks of slices with an exact occupancy of the slices (floaters put density in 12-16% of
the 8 x 8-texel tiles of even the nearest slices: every chunk of rays meets them, and the
per-ray version cost more than the reads it saved: 1.00 s against 0.87 s a frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nerfcli.data.rays import Rays
from nerfcli.models.tensorf.field import TensorfField
from nerfcli.render.composite import LAST_DELTA, Composite


def _box_xy(field: TensorfField, rays: Rays) -> tuple[torch.Tensor, torch.Tensor]:
    """Box x, y at t = 0 [R, 2] and their change per unit t [R, 2] (as density_slices)."""
    lo, hi = field.aabb[0], field.aabb[1]
    scale = 2.0 / (hi - lo)  # [3]
    start = (rays.origins[:, :2] - lo[:2]) * scale[:2] - 1.0  # [R, 2]
    return start, rays.directions[:, :2] * scale[:2]


def optical_depth(field: TensorfField, rays: Rays, t_row: torch.Tensor) -> torch.Tensor:
    """Cumulative optical depth c [R, S] = sum_{j <= s} sigma_j delta_j along rays [R]
    sharing depths t_row [S]; sigma as `TensorfField.density_slices` (0 outside the box)."""
    z = field.slice_depths(rays, t_row)  # [S]
    slices = field.slice_stack(z)  # [S, Ry, Rx] density feature
    start, step = _box_xy(field, rays)  # [R, 2]
    gaps = torch.cat([t_row[1:] - t_row[:-1], t_row.new_tensor([LAST_DELTA])])  # [S]
    gaps = gaps * (z.abs() <= 1.0)  # [S]; outside the box in z: no density
    grid = torch.addcmul(start[None], t_row[:, None, None], step[None])  # [S, R, 2]
    feature = F.grid_sample(slices[:, None], grid[:, None], align_corners=True)
    feature = feature.view(t_row.shape[0], -1)  # [S, R]
    if not _segments_inside(start, step, t_row):  # outside the box: the lowest feature, 0 density
        outside = (grid.abs() > 1.0).any(-1)  # [S, R]
        feature = feature.masked_fill(outside, torch.finfo(feature.dtype).min)
    norm = torch.linalg.norm(rays.directions, dim=-1)  # [R]
    tau = feature.new_empty(len(rays), t_row.shape[0])  # [R, S], samples of a ray side by side
    if field.cfg.density_activation == "relu":  # relu(f) * gap = relu(f * gap), gap >= 0
        torch.mul(feature.t(), gaps[None] * field.cfg.distance_scale, out=tau)
        tau.clamp_(min=0.0)
    else:
        torch.mul(field.activate_density(feature).t(), gaps[None], out=tau)
    tau.mul_(norm[:, None])
    return torch.cumsum(tau, 1, out=tau)


def _segments_inside(start: torch.Tensor, step: torch.Tensor, t_row: torch.Tensor) -> bool:
    """True when every ray's samples lie inside the box in x, y: both ends of each segment
    do (it is convex), so no sample needs the inside test."""
    ends = torch.stack([start + t_row[0] * step, start + t_row[-1] * step])  # [2, R, 2]
    return bool((ends.abs() <= 1.0).all())


def composite_quantiles(
    field: TensorfField,
    rays: Rays,  # [R]
    t_row: torch.Tensor,  # [S]
    optical: torch.Tensor,  # [R, S] cumulative optical depth (overwritten)
    count: int,  # K colour quantiles
    white_bkgd: bool,
) -> tuple[Composite, int]:
    """The composite of `_colour_by_quantiles` + `composite_grouped` from the optical depth,
    and how many colours were evaluated."""
    num_rays, num_samples = optical.shape
    # minus the transmittance before each sample and after it: ntrans[:, s + 1] = -T_s
    ntrans = torch.empty(num_rays, num_samples + 1, dtype=optical.dtype, device=optical.device)
    ntrans[:, 0] = -1.0
    torch.exp(optical.neg_(), out=ntrans[:, 1:])
    ntrans[:, 1:].neg_()
    weights = ntrans[:, 1:] - ntrans[:, :-1]  # [R, S] T_{s-1} - T_s
    opacity = ntrans[:, -1] + 1.0  # [R]
    total = opacity.clamp(min=1e-10)[:, None]  # [R, 1]
    fractions = torch.arange(count + 1, dtype=optical.dtype, device=optical.device) / count
    # colour quantile k sits at the first sample whose cdf 1 - T_s reaches (k + 0.5) / K
    targets = (fractions[:-1] + 0.5 / count)[None] * total - 1.0  # [R, K]
    chosen = torch.searchsorted(ntrans, targets.contiguous()) - 1  # [R, K]
    chosen = chosen.clamp(0, num_samples - 1)
    # group k: the samples whose mass midpoint cdf_s - w_s / 2 = 1 + (ntrans_s + ntrans_s+1) / 2
    # lies in [k / K, (k + 1) / K) of the total, a run of samples [b_k, b_k+1)
    midpoints = ntrans[:, 1:] + ntrans[:, :-1]  # [R, S] ascending
    bounds = 2.0 * (fractions[1:-1][None] * total - 1.0)  # [R, K - 1]
    inner = torch.searchsorted(midpoints, bounds.contiguous())  # [R, K - 1]
    edges = torch.cat(
        [inner.new_zeros(num_rays, 1), inner, inner.new_full((num_rays, 1), num_samples)], 1
    )  # [R, K + 1]
    at_edges = torch.gather(ntrans, 1, edges)  # [R, K + 1] -T before each run
    group_weights = at_edges[:, 1:] - at_edges[:, :-1]  # [R, K]
    # one colour per distinct (sample, ray), ordered slice by slice: neighbouring rays then
    # read neighbouring rows of the baked table
    rays_index = torch.arange(num_rays, device=optical.device)[:, None]  # [R, 1]
    unique, inverse = torch.unique(chosen * num_rays + rays_index, return_inverse=True)  # [U]
    sample = torch.div(unique, num_rays, rounding_mode="floor")  # [U]
    ray_index = unique - sample * num_rays  # [U]
    colour = field.colour_at_samples(rays, t_row, ray_index, sample)  # [U, 3]
    rgb = torch.sum(group_weights[..., None] * colour[inverse], 1)  # [R, 3]
    depth = weights @ t_row  # [R]
    disparity = 1.0 / torch.clamp(depth / torch.clamp(opacity, min=1e-10), min=1e-10)
    if white_bkgd:
        rgb = rgb + (1.0 - opacity[:, None])
    return Composite(rgb, depth, disparity, opacity, weights), len(unique)
