"""Volume rendering as small pure functions: sampling along rays and alpha compositing.

For samples at depths t_0 < t_1 < ... along a ray with direction d:
    delta_i = (t_{i+1} - t_i) * |d|        (the last interval is 1e10: the ray ends in the sample)
    alpha_i = 1 - exp(-sigma_i * delta_i)
    T_i     = prod_{j<i} (1 - alpha_j)      (exclusive cumulative product, T_0 = 1)
    w_i     = T_i * alpha_i
    rgb = sum w_i c_i, depth = sum w_i t_i, opacity = sum w_i, disparity = 1 / (depth / opacity)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

LAST_DELTA = 1e10


@dataclass
class Composite:
    rgb: torch.Tensor  # [R, 3]
    depth: torch.Tensor  # [R]
    disparity: torch.Tensor  # [R]
    opacity: torch.Tensor  # [R]
    weights: torch.Tensor  # [R, S]


@dataclass
class RenderResult:
    """What a model returns for a batch of rays; `extras` holds model-specific outputs."""

    rgb: torch.Tensor  # [R, 3]
    depth: torch.Tensor  # [R]  expected t along the ray (NDC t for forward-facing scenes)
    disparity: torch.Tensor  # [R]
    opacity: torch.Tensor  # [R]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. rgb_coarse [R, 3]


# ----------------------------------------------------------------------------- compositing


def sample_deltas(t_vals: torch.Tensor, rays_d: torch.Tensor) -> torch.Tensor:
    """Interval lengths [R, S] in world units; the last interval is LAST_DELTA."""
    deltas = t_vals[..., 1:] - t_vals[..., :-1]  # [R, S-1]
    last = torch.full_like(t_vals[..., :1], LAST_DELTA)  # [R, 1]
    deltas = torch.cat([deltas, last], -1)  # [R, S]
    return deltas * torch.linalg.norm(rays_d[..., None, :], dim=-1)  # [R, S]


def alpha_from_density(sigma: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """alpha = 1 - exp(-sigma * delta) [R, S]; sigma must already be non-negative."""
    return 1.0 - torch.exp(-sigma * deltas)


def transmittance(alpha: torch.Tensor) -> torch.Tensor:
    """Exclusive cumulative product of (1 - alpha) [R, S]: light reaching each sample."""
    ones = torch.ones_like(alpha[..., :1])  # [R, 1]
    # The 1e-10 keeps the product differentiable through fully opaque samples (as the reference).
    return torch.cumprod(torch.cat([ones, 1.0 - alpha + 1e-10], -1), -1)[..., :-1]  # [R, S]


def weights_from_alpha(alpha: torch.Tensor) -> torch.Tensor:
    return alpha * transmittance(alpha)  # [R, S]


def composite(
    rgb: torch.Tensor,
    sigma: torch.Tensor,
    t_vals: torch.Tensor,
    rays_d: torch.Tensor,
    white_bkgd: bool = False,
) -> Composite:
    """Alpha-composite per-sample colour [R, S, 3] and density [R, S] along rays."""
    deltas = sample_deltas(t_vals, rays_d)  # [R, S]
    alpha = alpha_from_density(sigma, deltas)  # [R, S]
    weights = weights_from_alpha(alpha)  # [R, S]
    return composite_weights(weights, rgb, t_vals, white_bkgd)


def composite_weights(
    weights: torch.Tensor, rgb: torch.Tensor, t_vals: torch.Tensor, white_bkgd: bool = False
) -> Composite:
    """Sum weighted colour and depth [R, S] -> per-ray outputs."""
    rgb_map = torch.sum(weights[..., None] * rgb, -2)  # [R, 3]
    return _per_ray(weights, rgb_map, t_vals, white_bkgd)


def composite_grouped(
    weights: torch.Tensor,
    group: torch.Tensor,
    colours: torch.Tensor,
    t_vals: torch.Tensor,
    white_bkgd: bool = False,
) -> Composite:
    """composite_weights for colour that is piecewise constant along each ray: sample s of
    ray r has colour colours[r, group[r, s]] (colours [R, K, 3], group [R, S] in 0..K-1).
    The weights of each group are summed first ([R, K]), so the colours are never expanded
    to every sample ([R, S, 3]); the result is the same up to float rounding."""
    group_weights = torch.zeros(
        colours.shape[:2], dtype=weights.dtype, device=weights.device
    ).scatter_add(1, group, weights)  # [R, K]
    rgb_map = torch.sum(group_weights[..., None] * colours, -2)  # [R, 3]
    return _per_ray(weights, rgb_map, t_vals, white_bkgd)


def _per_ray(
    weights: torch.Tensor, rgb_map: torch.Tensor, t_vals: torch.Tensor, white_bkgd: bool
) -> Composite:
    """Depth, opacity and disparity [R] from the weights [R, S]; the white background."""
    depth = torch.sum(weights * t_vals, -1)  # [R]
    opacity = torch.sum(weights, -1)  # [R]
    disparity = 1.0 / torch.clamp(depth / torch.clamp(opacity, min=1e-10), min=1e-10)  # [R]
    if white_bkgd:
        rgb_map = rgb_map + (1.0 - opacity[..., None])
    return Composite(rgb_map, depth, disparity, opacity, weights)


def apply_background(result: RenderResult, colour: torch.Tensor) -> RenderResult:
    """Composite a result rendered on black onto a background colour ([3] or per ray [R, 3]):
    rgb + (1 - opacity) * colour, for the final colour and a coarse pass's (extras
    `rgb_coarse` with `opacity_coarse`). Used for a random background during training."""
    extras = dict(result.extras)
    if "rgb_coarse" in extras and "opacity_coarse" in extras:
        extras["rgb_coarse"] = (
            extras["rgb_coarse"] + (1.0 - extras["opacity_coarse"][..., None]) * colour
        )
    rgb = result.rgb + (1.0 - result.opacity[..., None]) * colour
    return RenderResult(rgb, result.depth, result.disparity, result.opacity, extras)
