"""The baked, frozen render field of a TensoRF model, and the fast no-grad render of scenes in
world coordinates (boxes and unbounded scenes) that reads it.

`FrozenField(field)` takes read-only copies of what a render reads, once (per checkpoint load,
per eval or preview during training: `TensorfModel.frozen_field`): the density feature at
every vertex (one [Rz, Ry, Rx] volume), the occupancy derived from it (a cell is occupied when
a corner's alpha exceeds `alpha_mask_threshold` at the sample spacing there: exact for the
trilinear density, see nerfcli.render.occupancy; and inside the field's alpha mask when it has
one, as the plain path reads only there), the appearance planes and lines stacked for
grid_sample, the basis, and the decoder's layers. Nothing in it is written after it is built,
so render threads share it without a lock.

`render_world_fast` is the image of `RenderPolicy.render` (the plain path, fast=False) for the
same rays: the same sample depths, but only the samples in occupied cells get a density
(nerfcli.render.march: blocks skipped by the free radius, then cells), rays stop once their
transmittance is below STOP_TRANSMITTANCE (at most that much weight is dropped per ray), and colour is
evaluated only at the K weight quantiles of the rays with any opacity. A bundle where nearly
every block may hold density (a fog: a barely trained model) is declined and the caller
renders the plain path, so the fast path is never much slower than it. Tested against the
plain path per scene kind in tests/unit/test_tensorf_world_fast.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nerfcli.data.rays import Rays
from nerfcli.models.tensorf.factors import LINE_AXES, PLANE_AXES, sample_stacked, stack_factors
from nerfcli.models.tensorf.fast import _layers, _mlp, decoder_dtype, decoder_inputs
from nerfcli.models.tensorf.field import TensorfField
from nerfcli.render.composite import Composite
from nerfcli.render.contraction import contract
from nerfcli.render.march import MarchSettings, composite_packed, contracted_rates, march
from nerfcli.render.occupancy import FrozenOccupancy, OccupancyGrid, occupied_cells

# Rays stop below this transmittance (the weight a ray can lose; PSNR within 0.01 dB on lego
# and fox, bench/README.md).
STOP_TRANSMITTANCE = 1e-4


class FrozenField:
    """Read-only render tensors of a TensorfField (module docstring)."""

    @torch.no_grad()
    def __init__(self, field: TensorfField, estimator: OccupancyGrid | None = None):
        self.aabb = field.aabb.detach().clone()  # [2, 3]
        self.contraction = field.cfg.contraction
        self.cfg = field.cfg
        feature = field.density_volume().detach()  # [Rz, Ry, Rx]
        self.volume = feature[None, None].contiguous()  # [1, 1, Rz, Ry, Rx]
        sigma = field.activate_density(feature)
        cells = occupied_cells(sigma, field.vertex_steps(), field.cfg.alpha_mask_threshold)
        if field.alpha_mask.numel() and field.alpha_mask.shape == cells.shape:
            cells = cells & field.alpha_mask
        if estimator is not None and estimator.built and estimator.occupied.shape == cells.shape:
            cells = cells & estimator.occupied  # the plain path reads only there too
        self.occupancy = FrozenOccupancy.build(cells)
        self.occupied_fraction = float(cells.float().mean())
        self.app_planes = stack_factors([p.detach() for p in field.app_planes])
        self.app_lines = stack_factors([line.detach() for line in field.app_lines])
        self.basis = field.basis.weight.detach().clone()  # [A, sum C]
        self.decoder = field.decoder  # read for its encoding settings only
        self.decoder_dtype = decoder_dtype(self.aabb.device)
        self.layers = _layers(field.decoder, self.decoder_dtype)
        self.activate = field.activate_density

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """TensorfField.normalize: world points [..., 3] -> grid coords [..., 3]."""
        lo, hi = self.aabb[0], self.aabb[1]
        coords = (points - lo) * (2.0 / (hi - lo)) - 1.0
        if self.contraction != "none":
            return 0.5 * contract(coords, self.contraction)
        return coords

    def sigma(self, coords: torch.Tensor) -> torch.Tensor:
        """Density [P] at grid coords [P, 3]: 0 outside the grid, as the plain path."""
        grid = coords.reshape(1, 1, 1, -1, 3)
        feature = F.grid_sample(self.volume, grid, align_corners=True).view(-1)  # [P]
        inside = (coords.abs() <= 1.0).all(-1)
        return self.activate(feature) * inside

    def colour(self, coords: torch.Tensor, viewdirs: torch.Tensor) -> torch.Tensor:
        """Colour [P, 3] at grid coords [P, 3] seen along viewdirs [P, 3]."""
        if len(coords) == 0:
            return coords.new_zeros(0, 3)
        plane_coords = [coords[:, PLANE_AXES[mode]] for mode in range(3)]
        zeros = torch.zeros_like(coords[:, 0])
        line_coords = [torch.stack([zeros, coords[:, LINE_AXES[mode]]], -1) for mode in range(3)]
        products = sample_stacked(self.app_planes, plane_coords) * sample_stacked(
            self.app_lines, line_coords
        )  # [P, sum C]
        features = products @ self.basis.t()  # [P, A]
        inputs = decoder_inputs(self.decoder, features, viewdirs).to(self.decoder_dtype)
        return _mlp(self.layers, inputs).float().sigmoid_()


def render_world_fast(
    frozen: FrozenField,
    rays: Rays,  # [R]
    t_vals: torch.Tensor,  # [R, S] the plain path's sample depths
    count: int,  # colour quantiles per ray
    white_bkgd: bool,
) -> tuple[Composite, tuple[int, int, int]] | None:
    """The composite [R] of the plain path through the occupancy grid (module docstring), and
    (all samples, samples given density, colours evaluated); None where the march declines
    (nearly every block occupied: the caller renders the plain path)."""
    settings = MarchSettings(stop_transmittance=STOP_TRANSMITTANCE)
    rates = None  # a box: straight_rates, exact
    if frozen.contraction != "none":
        box_scale = 2.0 / (frozen.aabb[1] - frozen.aabb[0])  # [3]
        rates = contracted_rates(rays.directions, box_scale, frozen.contraction)
    packed = march(
        frozen.occupancy,
        frozen.normalize,
        frozen.sigma,
        rays.origins,
        rays.directions,
        t_vals,
        settings,
        rates,
    )

    def colour_fn(ray: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        points = (
            rays.origins.index_select(0, ray) + rays.directions.index_select(0, ray) * t[:, None]
        )
        return frozen.colour(frozen.normalize(points), rays.viewdirs.index_select(0, ray))

    if packed is None:  # a fog: the plain path is as fast
        return None
    out, coloured = composite_packed(packed, t_vals, count, colour_fn, white_bkgd)
    return out, (t_vals.numel(), len(packed.ray), coloured)
