"""Volume rendering as small pure functions: sampling along rays and alpha compositing.

For samples at depths t_0 < t_1 < ... along a ray with direction d:
    delta_i = (t_{i+1} - t_i) * |d|        (the last interval is 1e10: the ray ends in the sample)
    alpha_i = 1 - exp(-sigma_i * delta_i)
    T_i     = prod_{j<i} (1 - alpha_j)      (exclusive cumulative product, T_0 = 1)
    w_i     = T_i * alpha_i
    rgb = sum w_i c_i, depth = sum w_i t_i, opacity = sum w_i, disparity = 1 / (depth / opacity)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from nerfcli.data.rays import Rays

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


# ----------------------------------------------------------------------------- sampling


def stratified_samples(
    near: torch.Tensor | float,
    far: torch.Tensor | float,
    num_rays: int,
    n_samples: int,
    perturb: bool,
    lindisp: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Depths [R, S] evenly spaced in [near, far] (or in inverse depth), jittered in their bins."""
    t = torch.linspace(0.0, 1.0, n_samples, device=device)  # [S]
    near = torch.as_tensor(near, dtype=torch.float32, device=device).reshape(-1, 1)
    far = torch.as_tensor(far, dtype=torch.float32, device=device).reshape(-1, 1)
    if lindisp:
        t_vals = 1.0 / (1.0 / near * (1.0 - t) + 1.0 / far * t)
    else:
        t_vals = near * (1.0 - t) + far * t
    t_vals = t_vals.expand(num_rays, n_samples)  # [R, S]
    if perturb:
        mids = 0.5 * (t_vals[..., 1:] + t_vals[..., :-1])  # [R, S-1]
        upper = torch.cat([mids, t_vals[..., -1:]], -1)
        lower = torch.cat([t_vals[..., :1], mids], -1)
        u = torch.rand(t_vals.shape, generator=generator, device=t_vals.device)
        t_vals = lower + (upper - lower) * u
    return t_vals.contiguous()


def sample_pdf(
    bins: torch.Tensor,
    weights: torch.Tensor,
    n_samples: int,
    deterministic: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Inverse-CDF sampling: n_samples depths [R, n] from the piecewise-constant pdf
    given by weights [R, B] over bins with edges [R, B+1]."""
    weights = weights + 1e-5  # no empty pdf
    pdf = weights / torch.sum(weights, -1, keepdim=True)  # [R, B]
    cdf = torch.cumsum(pdf, -1)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], -1)  # [R, B+1]
    shape = list(cdf.shape[:-1]) + [n_samples]
    if deterministic:
        u = torch.linspace(0.0, 1.0, n_samples, device=cdf.device).expand(shape)
    else:
        u = torch.rand(shape, generator=generator, device=cdf.device)
    u = u.contiguous()
    inds = torch.searchsorted(cdf.detach(), u, right=True)  # [R, n]
    below = torch.clamp(inds - 1, min=0)
    above = torch.clamp(inds, max=cdf.shape[-1] - 1)
    cdf_below = torch.gather(cdf, -1, below)
    cdf_above = torch.gather(cdf, -1, above)
    bins_below = torch.gather(bins, -1, below)
    bins_above = torch.gather(bins, -1, above)
    denom = cdf_above - cdf_below
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    frac = (u - cdf_below) / denom
    return bins_below + frac * (bins_above - bins_below)  # [R, n]


def box_interval(
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    near: float,
    far: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The part of each ray's [near, far] inside the box lo..hi (slab method): t_in, t_out [R].
    A ray that misses the box there gets t_in = t_out = near, a point outside the box."""
    safe = torch.where(rays_d.abs() < 1e-9, torch.full_like(rays_d, 1e-9), rays_d)  # [R, 3]
    to_lo = (lo - rays_o) / safe  # [R, 3]
    to_hi = (hi - rays_o) / safe  # [R, 3]
    t_in = torch.minimum(to_lo, to_hi).amax(-1).clamp(min=near)  # [R]
    t_out = torch.maximum(to_lo, to_hi).amin(-1).clamp(max=far)  # [R]
    miss = t_out <= t_in  # [R]
    return torch.where(miss, near, t_in), torch.where(miss, near, t_out)


def sample_points(rays_o: torch.Tensor, rays_d: torch.Tensor, t_vals: torch.Tensor) -> torch.Tensor:
    """Points [R, S, 3] = o + t d."""
    return rays_o[..., None, :] + rays_d[..., None, :] * t_vals[..., :, None]


# ----------------------------------------------------------------------------- full images


RenderFn = Callable[[Rays], RenderResult]


def render_in_chunks(render_fn: RenderFn, rays: Rays, chunk: int) -> RenderResult:
    """Render a flat bundle of rays [R] in chunks of at most `chunk` rays and concatenate."""
    outputs: list[RenderResult] = []
    for start in range(0, len(rays), chunk):
        outputs.append(render_fn(rays[start : start + chunk]))
    keys = outputs[0].extras.keys()
    return RenderResult(
        rgb=torch.cat([o.rgb for o in outputs], 0),
        depth=torch.cat([o.depth for o in outputs], 0),
        disparity=torch.cat([o.disparity for o in outputs], 0),
        opacity=torch.cat([o.opacity for o in outputs], 0),
        extras={k: torch.cat([o.extras[k] for o in outputs], 0) for k in keys},
    )
