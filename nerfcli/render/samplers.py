"""Where to sample along rays: stratified depths, inverse-CDF (hierarchical) samples, the part
of each ray inside a box, samples of unbounded rays (uniform in the box, then in disparity out
to infinity), and the points at given depths."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


def unbounded_samples(
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    near: float,
    n_inner: int,
    n_outer: int,
    perturb: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Depths [R, n_inner + n_outer], increasing, for rays [R] of an unbounded scene whose inner
    region is the box lo..hi (mip-NeRF 360's spacing):
    - n_inner uniform in t over [near, t_exit], t_exit where the ray leaves the box (near for a
      ray that misses it; a ray starting outside the box is sampled uniformly from near too);
    - n_outer uniform in disparity 1/t from 1/t_exit down to 0: out to infinity, so the room
      or sky at any distance is sampled, about evenly in contracted space (|y| = 2 - 1/t for
      a ray from the box centre). The scene's far is not used.
    One sample in each of the n equal bins of each part: at the bin's middle, or jittered
    uniformly inside it when `perturb` (training). The last sample is at a finite t (at most
    t_exit / (1 - u) for the last bin's u < 1)."""
    num_rays = rays_o.shape[0]
    _, t_exit = box_interval(rays_o, rays_d, lo, hi, near, float("inf"))  # [R]
    t_exit = t_exit.clamp(min=max(near, 1e-6))[:, None]  # [R, 1]
    shape = (num_rays, n_inner + n_outer)
    if perturb:
        u = torch.rand(shape, generator=generator, device=rays_o.device)
    else:
        u = torch.full(shape, 0.5, device=rays_o.device)
    inner_bins = torch.arange(n_inner, device=rays_o.device, dtype=torch.float32)
    s_inner = (inner_bins + u[:, :n_inner]) / n_inner  # [R, n_inner] in [0, 1)
    t_inner = near + (t_exit - near) * s_inner
    outer_bins = torch.arange(n_outer, device=rays_o.device, dtype=torch.float32)
    s_outer = (outer_bins + u[:, n_inner:]) / n_outer  # [R, n_outer] in [0, 1)
    t_outer = t_exit / (1.0 - s_outer).clamp(min=1e-7)  # disparity (1 - s) / t_exit
    return torch.cat([t_inner, t_outer], -1).contiguous()


@dataclass(frozen=True)
class EvenDepths:
    """Depths evenly spaced in [near, far] of each ray, S of them (a box scene's samples):
    stratified_samples' rows described per ray, not materialised as [R, S] (the compiled
    march computes each ray's row without jitter: render/compiled.py)."""

    near: torch.Tensor  # [R]
    far: torch.Tensor  # [R]
    count: int  # S

    def rows(self, perturb: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """The depths [R, S] (jittered in their bins when perturb), on the rays' device."""
        return stratified_samples(
            self.near,
            self.far,
            len(self.near),
            self.count,
            perturb,
            False,
            generator,
            self.near.device,
        )


@dataclass(frozen=True)
class UnboundedDepths:
    """unbounded_samples' rows, described per ray: without jitter n_inner at the bin middles of
    [near, t_exit], n_outer at the bin middles in disparity from t_exit to 0."""

    origins: torch.Tensor  # [R, 3]
    directions: torch.Tensor  # [R, 3]
    lo: torch.Tensor  # [3]
    hi: torch.Tensor  # [3]
    near: float
    n_inner: int
    n_outer: int

    @property
    def count(self) -> int:
        return self.n_inner + self.n_outer

    def rows(self, perturb: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """The depths [R, S] (jittered in their bins when perturb)."""
        return unbounded_samples(
            self.origins,
            self.directions,
            self.lo,
            self.hi,
            self.near,
            self.n_inner,
            self.n_outer,
            perturb,
            generator,
        )

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(t_exit [R], t_exit - near [R], inner fractions [n_inner], 1 - outer fractions
        [n_outer], clamped) as unbounded_samples computes them: depth i of a ray is near +
        (t_exit - near) * inner_i, then t_exit / outer_i, in float32 the same bits."""
        _, t_exit = box_interval(
            self.origins, self.directions, self.lo, self.hi, self.near, float("inf")
        )
        t_exit = t_exit.clamp(min=max(self.near, 1e-6))  # [R]
        device = self.origins.device
        inner = (
            torch.arange(self.n_inner, device=device, dtype=torch.float32) + 0.5
        ) / self.n_inner
        outer = (
            torch.arange(self.n_outer, device=device, dtype=torch.float32) + 0.5
        ) / self.n_outer
        return t_exit, t_exit - self.near, inner, (1.0 - outer).clamp(min=1e-7)
