"""TensoRF's render policy: how many samples a ray gets and where, which density path a batch
takes, which samples get a colour, and how they are composited.

- Sampling: stratified depths, about one per voxel / step_ratio (capped at max_samples). In
  NDC the jitter is shared by the rays of a batch, so they share the z of every sample and the
  density is read from z-slices (`TensorfField.density_slices`); in world coordinates each ray
  is sampled only over the part of its [near, far] inside the scene box (`box_interval`), as
  TensoRF does, and the density is read at the samples inside the box (and the alpha mask).
  With a contraction (unbounded scenes) each ray is sampled uniformly in t to where it leaves
  the box, then uniformly in disparity out to infinity (`unbounded_samples`); every sample is
  inside the contracted grid, and the alpha mask skips the empty ones.
- Colour, with colour_samples = K > 0: evaluated at K weight quantiles per ray and held
  piecewise constant between them (`_colour_by_quantiles`; exact when colour is constant along
  a ray). With colour_samples = 0: only where the ray weight exceeds weight_threshold
  (TensoRF's rule; the skipped samples contribute at most that weight each).
The plain path, colour at every sample, is nerfcli.models.reference.render_rays_reference.
No-grad renders (eval, previews, videos) take a fast path, the same image in fewer passes
(`fast=False`: this module's, as in training): fast.py's in NDC, frozen.py's in world
coordinates (boxes and unbounded scenes: the occupancy grid, early termination, the baked
frozen field; on the CPU one compiled loop per ray, nerfcli.render.compiled, which takes the
sample depths as a recipe per ray, `world_depths`, instead of [R, S]).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nerfcli.data.rays import Rays
from nerfcli.models.tensorf.config import TensorfModelConfig
from nerfcli.models.tensorf.fast import colour_at, composite_quantiles, optical_depth
from nerfcli.models.tensorf.field import TensorfField
from nerfcli.models.tensorf.frozen import FrozenField, render_world_fast
from nerfcli.render.composite import (
    Composite,
    alpha_from_density,
    composite_grouped,
    composite_weights,
    sample_deltas,
    weights_from_alpha,
)
from nerfcli.render.occupancy import OccupancyGrid
from nerfcli.render.samplers import (
    EvenDepths,
    UnboundedDepths,
    box_interval,
    sample_points,
    stratified_samples,
)

SampleCounts = tuple[int, int, int]  # (all samples, samples given density, given colour)


@dataclass(frozen=True)
class RenderPolicy:
    """The settings that decide how a TensoRF field is rendered (from the config)."""

    ndc: bool  # rays in NDC (forward-facing) rather than world coordinates
    perturb: bool  # jitter sample depths when training
    white_bkgd: bool
    step_ratio: float  # sample spacing in voxels
    max_samples: int  # cap on samples per ray (0: none)
    colour_samples: int  # colour evaluations per ray, at weight quantiles (0: threshold)
    weight_threshold: float
    # no-grad NDC renders take fast.py's path (False: this module's, as training does)
    fast: bool = True
    contraction: str = "none"  # none, or the unbounded scene's contraction (linf, l2)

    @classmethod
    def from_config(
        cls, m: TensorfModelConfig, ndc: bool, white_bkgd: bool, perturb: bool
    ) -> RenderPolicy:
        """The policy of TensoRF's config section and the scene's settings."""
        return cls(
            ndc=ndc,
            perturb=perturb,
            white_bkgd=white_bkgd,
            step_ratio=m.step_ratio,
            max_samples=m.max_samples,
            colour_samples=m.colour_samples,
            weight_threshold=m.weight_threshold,
            contraction=m.contraction,
        )

    # ------------------------------------------------------------------ sampling

    def num_samples(
        self, field: TensorfField, near: float, far: float, rays_d: torch.Tensor | None = None
    ) -> int:
        """Samples per ray: the ray's span in voxels / step_ratio, capped at max_samples.

        NDC rays cross the box in z (t in [0, 1] maps z from -1 to 1), i.e. Rz - 1 voxels;
        world rays span (far - near) |d| / voxel size. With a contraction: the box's diagonal
        in its voxels (half the grid's), capped, plus field.outer_samples() past the box.
        """
        if self.ndc:
            span_voxels = float(field.resolution[2] - 1)
        else:
            size = (field.aabb[1] - field.aabb[0]).cpu()  # [3]
            voxel = float(torch.mean(size / field.inner_voxels()))
            length = 1.0
            if rays_d is not None and rays_d.numel():
                length = float(torch.linalg.norm(rays_d, dim=-1).mean())
            # samples cover only the part of each ray inside the box (sample_depths)
            span = float(torch.linalg.norm(size))
            if not self.contracted:
                span = min((far - near) * length, span)
            span_voxels = span / voxel
        count = int(math.ceil(span_voxels / self.step_ratio)) + 1
        if self.max_samples > 0:
            count = min(count, self.max_samples)
        count = max(count, 2)
        return count + field.outer_samples() if self.contracted else count

    @property
    def contracted(self) -> bool:
        return self.contraction != "none"  # TensorfModel refuses it with NDC

    def sample_depths(
        self,
        field: TensorfField,
        rays: Rays,  # [R]
        near: float,
        far: float,
        train: bool,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Sample depths t [R, S], stratified in [near, far] (jittered when training). In NDC
        the jitter is drawn once per sample index and shared by the rays of the batch; in world
        coordinates each ray is sampled only where it is inside the scene box; with a
        contraction, through the box and then in disparity to infinity (far is not used)."""
        perturb = train and self.perturb
        if not self.ndc:  # the recipe of the no-grad render, materialised (jittered or not)
            return self.world_depths(field, rays, near, far).rows(perturb, generator)  # [R, S]
        num_samples = self.num_samples(field, near, far, rays.directions)
        row = stratified_samples(
            near, far, 1, num_samples, perturb, False, generator, rays.origins.device
        )
        return row.expand(len(rays), num_samples)  # [R, S]

    def world_depths(
        self, field: TensorfField, rays: Rays, near: float, far: float
    ) -> EvenDepths | UnboundedDepths:
        """The depths of world rays as a recipe per ray, not materialised: the compiled march
        computes each ray's row; `rows(perturb, generator)` gives the [R, S] that
        sample_depths returns (it is how sample_depths makes them)."""
        num_samples = self.num_samples(field, near, far, rays.directions)
        if self.contracted:
            n_outer = field.outer_samples()
            lo, hi = field.aabb[0], field.aabb[1]
            return UnboundedDepths(
                rays.origins, rays.directions, lo, hi, near, num_samples - n_outer, n_outer
            )
        t_in, t_out = box_interval(
            rays.origins, rays.directions, field.aabb[0], field.aabb[1], near, far
        )  # [R], [R]
        return EvenDepths(t_in, t_out, num_samples)

    def shares_depth(self, rays: Rays) -> bool:
        """True when every ray has the same z origin and z direction (NDC rays: -1 and 2)."""
        if not self.ndc or len(rays) == 0:
            return False
        oz, dz = rays.origins[:, 2], rays.directions[:, 2]  # [R]
        spread = torch.stack([oz.max() - oz.min(), dz.max() - dz.min()])
        return bool((spread <= 1e-5).all())

    # ------------------------------------------------------------------ rendering

    def render(
        self,
        field: TensorfField,
        rays: Rays,  # [R]
        near: float,
        far: float,
        train: bool,
        generator: torch.Generator | None = None,
        estimator: OccupancyGrid | None = None,
        frozen: Callable[[], FrozenField] | None = None,
    ) -> tuple[Composite, SampleCounts]:
        """Composite [R] of the rays, and how many samples got density and colour; density is
        read only in the `estimator`'s occupied cells once it is built, and no-grad world
        renders go through the baked field `frozen()` returns."""
        fast = self.fast and self.colour_samples > 0 and not torch.is_grad_enabled()
        if fast and not self.ndc and frozen is not None:
            depths = self.world_depths(field, rays, near, far)
            return render_world_fast(frozen(), rays, depths, self.colour_samples, self.white_bkgd)
        t_vals = self.sample_depths(field, rays, near, far, train, generator)  # [R, S]
        if fast:
            if field.alpha_mask.numel() == 0 and self.shares_depth(rays):
                return self._render_fast(field, rays, t_vals[0])
        if self.shares_depth(rays):
            sigma = field.density_slices(rays, t_vals[0])  # [R, S]
            given_density = sigma.numel()  # every sample; zero density marks the rest
        else:
            sigma, given_density = _density_in_box(field, rays, t_vals, estimator)  # [R, S]
        deltas = sample_deltas(t_vals, rays.directions)  # [R, S]
        weights = weights_from_alpha(alpha_from_density(sigma, deltas))  # [R, S]
        if self.colour_samples > 0:
            # colours [R, K, 3] by group [R, S]: composited without expanding them per sample
            colours, group, colour_index = _colour_by_quantiles(
                field, rays, t_vals, weights, self.colour_samples
            )
            out = composite_grouped(weights, group, colours, t_vals, self.white_bkgd)
        else:
            flat_weights = weights.detach().reshape(-1)  # [R*S]
            colour_index = torch.nonzero(flat_weights > self.weight_threshold).squeeze(-1)
            rgb = _colour_at(field, rays, t_vals, colour_index)  # [R, S, 3]
            out = composite_weights(weights, rgb, t_vals, self.white_bkgd)
        return out, (sigma.numel(), given_density, len(colour_index))

    def _render_fast(
        self, field: TensorfField, rays: Rays, t_row: torch.Tensor
    ) -> tuple[Composite, SampleCounts]:
        """The no-grad NDC render of fast.py: the same composite as `render`."""
        optical = optical_depth(field, rays, t_row)  # [R, S]
        out, coloured = composite_quantiles(
            optical,
            t_row,
            self.colour_samples,
            self.white_bkgd,
            lambda ray, sample: colour_at(field, rays, t_row, ray, sample),
        )
        return out, (optical.numel(), optical.numel(), coloured)


def _density_in_box(
    field: TensorfField, rays: Rays, t_vals: torch.Tensor, estimator: OccupancyGrid | None
) -> tuple[torch.Tensor, int]:
    """Density [R, S] read at the samples inside the box and the alpha mask (0 elsewhere),
    and how many samples were read."""
    num_rays, num_samples = t_vals.shape
    points = sample_points(rays.origins, rays.directions, t_vals)  # [R, S, 3]
    coords = field.normalize(points).reshape(-1, 3)  # [R*S, 3]
    valid = torch.all(coords.abs() <= 1.0, -1)  # [R*S]
    valid_index = torch.nonzero(valid).squeeze(-1)  # [V]
    if field.alpha_mask.numel():
        valid_index = valid_index[field.alpha_mask_lookup(coords[valid_index])]
    if estimator is not None and estimator.built:  # the occupancy grid (render/occupancy.py)
        valid_index = valid_index[estimator.lookup(coords[valid_index])]
    sigma_valid = field.activate_density(field.density_feature(coords[valid_index]))  # [V]
    sigma = torch.zeros(num_rays * num_samples, device=coords.device, dtype=sigma_valid.dtype)
    sigma = sigma.index_put((valid_index,), sigma_valid).view(num_rays, num_samples)
    return sigma, len(valid_index)


def _coords_at(
    field: TensorfField, rays: Rays, t_vals: torch.Tensor, flat_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Box coordinates [P, 3] and ray index [P] of the samples at flat indices [P] into
    t_vals [R, S]."""
    ray_index = torch.div(flat_index, t_vals.shape[1], rounding_mode="floor")  # [P]
    t = t_vals.reshape(-1)[flat_index]  # [P]
    points = rays.origins[ray_index] + t[:, None] * rays.directions[ray_index]  # [P, 3]
    return field.normalize(points), ray_index


def _colour_at(
    field: TensorfField, rays: Rays, t_vals: torch.Tensor, flat_index: torch.Tensor
) -> torch.Tensor:
    """Colour [R, S, 3] evaluated at the samples flat_index [A] into [R, S], 0 elsewhere."""
    num_rays, num_samples = t_vals.shape
    coords, ray_index = _coords_at(field, rays, t_vals, flat_index)  # [A, 3], [A]
    colour = field.decoder(field.appearance(coords), rays.viewdirs[ray_index])  # [A, 3]
    rgb = torch.zeros(num_rays * num_samples, 3, device=colour.device, dtype=colour.dtype)
    return rgb.index_put((flat_index,), colour).view(num_rays, num_samples, 3)


def _colour_by_quantiles(
    field: TensorfField,
    rays: Rays,  # [R]
    t_vals: torch.Tensor,  # [R, S]
    weights: torch.Tensor,  # [R, S]
    count: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Colour from K = count evaluations per ray: (colours [R, K, 3], the group [R, S] whose
    colour each sample takes, evaluated flat indices [U]).

    Each ray's weight mass is cut into K equal quantiles; the colour of quantile k is evaluated
    once, at the sample holding its middle ((k + 0.5) / K of the mass), and every sample whose
    mass lies in quantile k takes that colour. Compositing then uses the exact weights, so
    depth, opacity and the density gradients keep every sample; only the colour along the ray
    is held piecewise constant over K stretches of equal mass. Exact when colour does not
    change along a ray. Sample s of ray r has colour colours[r, group[r, s]];
    `composite_grouped` composites that without expanding it.
    """
    num_rays, num_samples = t_vals.shape
    w = weights.detach()  # [R, S]
    cdf = torch.cumsum(w, -1)  # [R, S]
    total = cdf[:, -1:].clamp(min=1e-10)  # [R, 1]
    middle = (cdf - 0.5 * w) / total  # [R, S] mass position of each sample, in [0, 1]
    group = torch.clamp((middle * count).long(), 0, count - 1)  # [R, S], non-decreasing
    quantiles = (torch.arange(count, device=w.device, dtype=w.dtype) + 0.5) / count  # [K]
    targets = quantiles[None] * total  # [R, K]
    chosen = torch.searchsorted(cdf, targets.contiguous())  # [R, K] first cdf >= target
    chosen = chosen.clamp(max=num_samples - 1)
    offsets = torch.arange(num_rays, device=w.device)[:, None] * num_samples  # [R, 1]
    unique, inverse = torch.unique(chosen + offsets, return_inverse=True)  # [U], [R, K]
    coords, ray_index = _coords_at(field, rays, t_vals, unique)  # [U, 3], [U]
    colour = field.decoder(field.appearance(coords), rays.viewdirs[ray_index])  # [U, 3]
    return colour[inverse], group, unique  # [R, K, 3], [R, S], [U]
