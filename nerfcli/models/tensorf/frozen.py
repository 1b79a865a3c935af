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
same rays, on the CPU where numba is installed as one compiled loop per ray
(nerfcli.render.compiled: the march, termination and the composite below without a tensor pass
per operation; the colours then in one batch from the grid coords it gives), else through the
tensor march: the same sample depths, but only the samples in occupied cells get a density
(nerfcli.render.march: blocks skipped by the free radius, then cells), rays stop once their
transmittance is below STOP_TRANSMITTANCE (at most that much weight is dropped per ray), and colour is
evaluated only at the K weight quantiles of the rays with any opacity. A bundle where nearly
every block may hold density (a fog: a barely trained model; or an unbounded scene whose
background fills the contracted grid) is declined by the march and rendered by `render_dense`:
every sample from the baked volume, in slabs, the rays that stopped leaving between slabs;
measured 1.2x the plain path's speed on a 4-minute cup model, where the march ran at 0.7x.
Both are tested against the plain path per scene kind in tests/unit/test_tensorf_world_fast.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nerfcli.data.rays import Rays
from nerfcli.models.tensorf.factors import (
    LINE_AXES,
    PLANE_AXES,
    appearance_at_depths,
    appearance_at_vertices,
    sample_stacked,
    stack_factors,
)
from nerfcli.models.tensorf.fast import (
    _layers,
    composite_quantiles,
    decode_rows,
    decoder_dtype,
    decoder_parts,
)
from nerfcli.models.tensorf.field import BAKE_DTYPE, BAKE_MAX_BYTES, TensorfField
from nerfcli.render import compiled
from nerfcli.render.composite import LAST_DELTA, Composite
from nerfcli.render.contraction import contract, contraction_norm
from nerfcli.render.march import MarchSettings, composite_packed, contracted_rates, march
from nerfcli.render.occupancy import FrozenOccupancy, OccupancyGrid, cell_index, occupied_cells
from nerfcli.render.samplers import EvenDepths, UnboundedDepths, sample_points

# Samples a ray reads at a time in `render_dense` before the rays that stopped leave.
DENSE_SLAB = 32

# Grids with more than this fraction of occupied cells are probed for a fog before a march
# (MarchSettings.probe): lego's 3.5% never is, a 4-minute cup's 52% and fox's 35% are.
PROBE_ABOVE = 0.2

# No-grad world renders take the compiled march (nerfcli.render.compiled) where numba is
# installed; False: the tensor march (`march` + `composite_packed`, or `render_dense`).
COMPILED = True

# Rays stop below this transmittance: the weight a ray can lose, so each colour channel moves by
# at most this much, a quarter of one 8-bit level (1/255) of the frames and PNGs written. 1e-4
# before: a 10-minute cup checkpoint's orbit frames read 51.3 densities a ray, 45.5 at 1e-3
# (bench/README.md gives the PSNR against the plain path on lego and fox).
STOP_TRANSMITTANCE = 1e-3


# Colour reads baked appearance at the vertices of the occupied cells (AppearanceVertices)
# once the colours a frozen field has evaluated reach TABLE_AFTER times the table's vertices.
# Measured on 1 core (Zen 4): a colour read from the table saves ~0.4 us of its ~0.7 us of
# factor reads; a vertex costs ~0.75 us to bake one by one (lego's 307 k: 0.23 s) or ~0.27 us
# a vertex used when every z-slice is baked (a 4-minute cup's 4.5 M: 1.2 s). So the bake pays
# after ~2 colours a vertex: lego's eval bakes within its first 5 views, a cup orbit within its
# first 3 frames.
TABLE_AFTER = 2.0


class AppearanceVertices:
    """The appearance features at the vertices of the occupied cells, baked ([N + 1, A] in
    BAKE_DTYPE, the last row zeros), with each grid vertex's row (N: no occupied cell touches
    it). `read` is a trilinear read of them: 8 rows and their weights as one embedding_bag
    bag, the factors' own value (factors.appearance_at_vertices) to the table's rounding."""

    def __init__(
        self,
        cells: torch.Tensor,
        planes,
        lines,
        basis: torch.Tensor,
        used: torch.Tensor | None = None,
    ) -> None:
        if used is None:  # the caller may have counted them already (vertices_of)
            used = vertices_of(cells)  # [Vz, Vy, Vx]
        self.shape = used.shape
        vz, vy, vx = used.shape
        flat = torch.nonzero(used.reshape(-1)).squeeze(1)  # [N]
        self.absent = len(flat)
        self.row_of = torch.full((used.numel(),), self.absent, dtype=torch.int32)
        self.row_of[flat] = torch.arange(len(flat), dtype=torch.int32)
        if len(flat) * 3 >= used.numel():
            # a third of the vertices or more (an unbounded scene's contracted grid): every
            # z-slice by matrix products, then the rows used (measured on a 4-minute cup's
            # 192^3 grid: 1.2 s, against 2.3 s for its 4.5 M vertices read one by one)
            z = torch.linspace(-1.0, 1.0, vz)  # the vertices' box z
            dense = appearance_at_depths(planes, lines, basis, z, BAKE_DTYPE)  # [Vz, Vy, Vx, A]
            features = dense.view(used.numel(), -1).index_select(0, flat)
        else:
            vertices = torch.stack([flat % vx, (flat // vx) % vy, flat // (vx * vy)], 1)
            features = appearance_at_vertices(planes, lines, basis, vertices, BAKE_DTYPE)
        self.rows = torch.cat([features, features.new_zeros(1, features.shape[1])])
        self.offsets = torch.tensor(
            [dz * vx * vy + dy * vx + dx for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]
        )  # [8] z, then y, then x

    def read(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [P, A] float32 at grid coords [P, 3] (clamped into the grid), and which
        points [P] touch a vertex with no row (weight > 0 on it: their features are wrong)."""
        vz, vy, vx = self.shape
        compiled_read = compiled.trilinear_texels(coords, self.row_of, self.shape, self.absent)
        if compiled_read is not None:  # the same texels and weights in one compiled pass
            texels, weights, missing = compiled_read
            features = F.embedding_bag(
                texels, self.rows, per_sample_weights=weights.to(self.rows.dtype), mode="sum"
            )
            return features.float(), missing
        size = coords.new_tensor([vx - 1, vy - 1, vz - 1])  # [3]
        pixel = (coords.clamp(-1.0, 1.0) + 1.0) * (0.5 * size)  # [P, 3]
        lower = torch.minimum(pixel.floor(), size - 1.0)  # [P, 3]
        frac = pixel - lower  # [P, 3]
        base = (lower[:, 2].long() * vy + lower[:, 1].long()) * vx + lower[:, 0].long()  # [P]
        texels = self.row_of[base[:, None] + self.offsets]  # [P, 8]
        fx, fy, fz = frac.unbind(-1)
        wx = torch.stack([1.0 - fx, fx], -1)  # [P, 2]
        wxy = (torch.stack([1.0 - fy, fy], -1)[:, :, None] * wx[:, None, :]).view(-1, 4)
        weights = (torch.stack([1.0 - fz, fz], -1)[:, :, None] * wxy[:, None, :]).view(-1, 8)
        features = F.embedding_bag(
            texels, self.rows, per_sample_weights=weights.to(self.rows.dtype), mode="sum"
        )
        missing = ((texels == self.absent) & (weights > 0)).any(1)  # [P]
        return features.float(), missing


def vertices_of(cells: torch.Tensor) -> torch.Tensor:
    """The vertices [Cz + 1, Cy + 1, Cx + 1] (bool) that are a corner of some cell of cells."""
    padded = F.pad(cells.float()[None, None], (1, 1, 1, 1, 1, 1))
    return F.max_pool3d(padded, kernel_size=2, stride=1)[0, 0] > 0


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
        # the compiled march's view of the same tensors (None without numba or off the CPU)
        self.grid: compiled.DensityGrid | None = None
        if COMPILED and self.aabb.device.type == "cpu" and compiled.available():
            self.grid = compiled.DensityGrid.of(
                feature,
                self.occupancy.occupied,
                self.occupancy.free,
                self.aabb,
                self.contraction,
                field.cfg.density_activation,
                field.cfg.density_shift,
                field.cfg.distance_scale,
            )
        self.app_planes = stack_factors([p.detach() for p in field.app_planes])
        self.app_lines = stack_factors([line.detach() for line in field.app_lines])
        self.basis = field.basis.weight.detach().clone()  # [A, sum C]
        # the appearance table (AppearanceVertices), baked once it pays: the one thing set
        # after the build, by one assignment (a render thread that still sees None reads the
        # factors; two threads passing the test at once both bake the same table)
        self.table: AppearanceVertices | None = None
        self._cells = cells
        self._factors = (
            [p.detach() for p in field.app_planes],
            [x.detach() for x in field.app_lines],
        )
        self._table_fits = self.aabb.device.type == "cpu" and min(cells.shape) > 0
        self._table_vertices: int | None = None  # counted once colours reach the cells' count
        self._used: torch.Tensor | None = None  # those vertices (vertices_of), kept for the bake
        self._coloured, self._baking = 0, False
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
        """Density [P] at grid coords [P, 3]: 0 outside the grid, as the plain path (a
        contracted point is always inside: |contract(x)| < 2, halved)."""
        grid = coords.reshape(1, 1, 1, -1, 3)
        feature = F.grid_sample(self.volume, grid, align_corners=True).view(-1)  # [P]
        if self.contraction != "none":
            return self.activate(feature)
        return self.activate(feature) * (coords.abs() <= 1.0).all(-1)

    def slab_coords(self, rays: Rays, live: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Grid coords [A * W, 3] of the samples at depths t [A, W] of rays live [A]. Box
        scenes: o + d t as sample_points computes it, then normalized (the same bits as the
        plain path: a sample on the box's face stays inside it). Contracted scenes: the box
        coords (o - lo) s - 1 + (d s) t in one pass, then contracted (no face to keep)."""
        origins, directions = (
            rays.origins.index_select(0, live),
            rays.directions.index_select(0, live),
        )
        if self.contraction == "none":
            return self.normalize(sample_points(origins, directions, t)).view(-1, 3)
        lo, hi = self.aabb[0], self.aabb[1]
        scale = 2.0 / (hi - lo)  # [3]
        start = torch.addcmul(-1.0 - lo * scale, origins, scale)  # [A, 3] box coords at t = 0
        box = torch.addcmul(start[:, None], (directions * scale)[:, None], t[..., None])
        return self.contract_half(box.view(-1, 3))

    def contract_half(self, box: torch.Tensor) -> torch.Tensor:
        """contract(box) / 2 [P, 3] (nerfcli.render.contraction), with the halving folded into
        the per-point factor: (2 - 1/n) / n / 2 = (2n - 1) / (2 n^2), n = max(|x|, 1)."""
        if self.contraction == "l2":  # |x|^2 as one product: 4x faster than vector_norm
            norm = (box * box @ box.new_ones(3, 1)).sqrt_().clamp_(min=1.0)  # [P, 1]
        else:
            norm = contraction_norm(box, self.contraction).clamp_(min=1.0)  # [P, 1]
        factor = (norm * 2.0 - 1.0).div_(norm.square().mul_(2.0))  # [P, 1]
        return box.mul_(factor)

    def colour_on_rays(self, rays: Rays, ray: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Colour [P, 3] at depths t [P] of rays ray [P] (indices into rays), o + d t as
        sample_points computes it."""
        origins, directions = (
            rays.origins.index_select(0, ray),
            rays.directions.index_select(0, ray),
        )
        points = origins + directions * t[:, None]
        return self.colour(self.normalize(points), rays.viewdirs.index_select(0, ray))

    def colour(self, coords: torch.Tensor, viewdirs: torch.Tensor) -> torch.Tensor:
        """Colour [P, 3] at grid coords [P, 3] seen along viewdirs [P, 3]."""
        if len(coords) == 0:
            return coords.new_zeros(0, 3)
        table = self.table or self._bake_when_it_pays(len(coords))
        if table is None:
            features = self.features(coords)
        else:
            features, missing = table.read(coords)
            if bool(missing.any()):  # a point on a face of an unoccupied cell (roundings)
                rows = torch.nonzero(missing).squeeze(1)
                features.index_copy_(0, rows, self.features(coords.index_select(0, rows)))
        inputs = decoder_parts(self.decoder, features, viewdirs)
        # blocks of fixed shapes: oneDNN builds its kernels once per shape (~3 ms), and a
        # bundle's count of colours is new every time
        return decode_rows(self.layers, inputs, self.decoder_dtype)

    def expect_colours(self, count: int) -> None:
        """Renders of about `count` colours are coming (an eval, a video): bake the appearance
        table now, on the caller's threads (every core; a render worker has one), where those
        colours pay for it (`_bake_when_it_pays`)."""
        if self.table is None:
            self._coloured += count
            self._bake_when_it_pays(0)

    def _bake_when_it_pays(self, count: int) -> AppearanceVertices | None:
        """The appearance table once the colours evaluated reach TABLE_AFTER x its vertices
        (CPU only, under BAKE_MAX_BYTES); None before."""
        self._coloured += count
        if not self._table_fits:
            return None
        if self._table_vertices is None:
            # the occupied cells bound the vertices from below: count them (0.2 s on a
            # 192^3 grid, too much for every build) only once the colours may pay
            if self._coloured < TABLE_AFTER * self.occupied_fraction * self._cells.numel():
                return None
            self._used = vertices_of(self._cells)  # 0.26 s on a 192^3 grid: once, not twice
            vertices = int(self._used.sum())
            if vertices * self.basis.shape[0] * BAKE_DTYPE.itemsize > BAKE_MAX_BYTES:
                self._table_fits, self._used = False, None
                return None
            self._table_vertices = vertices
        if self._coloured < TABLE_AFTER * self._table_vertices:
            return None
        if self._baking:  # another render thread is baking it: read the factors meanwhile
            return None
        self._baking = True
        try:
            planes, lines = self._factors
            self.table = AppearanceVertices(self._cells, planes, lines, self.basis, self._used)
            self._used = None
        finally:
            self._baking = False
        return self.table

    def features(self, coords: torch.Tensor) -> torch.Tensor:
        """Appearance features [P, A] at grid coords [P, 3] from the factors."""
        plane_coords = [coords[:, PLANE_AXES[mode]] for mode in range(3)]
        zeros = torch.zeros_like(coords[:, 0])
        line_coords = [torch.stack([zeros, coords[:, LINE_AXES[mode]]], -1) for mode in range(3)]
        products = sample_stacked(self.app_planes, plane_coords) * sample_stacked(
            self.app_lines, line_coords
        )  # [P, sum C]
        return products @ self.basis.t()  # [P, A]


def render_world_fast(
    frozen: FrozenField,
    rays: Rays,  # [R]
    depths: torch.Tensor | EvenDepths | UnboundedDepths,  # the plain path's depths [R, S]
    count: int,  # colour quantiles per ray
    white_bkgd: bool,
) -> tuple[Composite, tuple[int, int, int]]:
    """The composite [R] of the plain path through the occupancy grid (module docstring), and
    (all samples, samples given density, colours evaluated): the compiled march where numba is
    installed (nerfcli.render.compiled), else the tensor march, or `render_dense` where it
    declines (nearly every block occupied)."""
    recipe = isinstance(depths, (EvenDepths, UnboundedDepths))  # rows not materialised
    if frozen.grid is not None:  # one compiled loop per ray, which gives the grid coords too

        def colour_at(ray: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
            return frozen.colour(coords, rays.viewdirs.index_select(0, ray))

        out, (read, coloured) = compiled.march_composite(
            frozen.grid,
            rays.origins,
            rays.directions,
            depths,
            STOP_TRANSMITTANCE,
            count,
            colour_at,
            white_bkgd,
        )
        samples = len(rays) * (depths.count if recipe else depths.shape[1])
        return out, (samples, read, coloured)
    t_vals = depths.rows() if recipe else depths  # [R, S]
    settings = MarchSettings(
        stop_transmittance=STOP_TRANSMITTANCE, probe=frozen.occupied_fraction > PROBE_ABOVE
    )
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
    if packed is None:  # a fog: every sample read in slabs, the rays compacted between them
        return render_dense(frozen, rays, t_vals, count, white_bkgd, settings.stop_transmittance)

    def colour_fn(ray: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return frozen.colour_on_rays(rays, ray, t)

    out, coloured = composite_packed(packed, t_vals, count, colour_fn, white_bkgd)
    return out, (t_vals.numel(), len(packed.ray), coloured)


def render_dense(
    frozen: FrozenField,
    rays: Rays,  # [R]
    t_vals: torch.Tensor,  # [R, S]
    count: int,  # colour quantiles per ray
    white_bkgd: bool,
    stop_transmittance: float,
) -> tuple[Composite, tuple[int, int, int]]:
    """The composite [R] of the plain path where nearly every cell is occupied (a fog, or an
    unbounded scene whose contracted background fills the grid), where the march's
    bookkeeping costs more than the samples it skips. Rays are read DENSE_SLAB samples at a
    time: density from the baked volume in occupied cells (as the march reads it), the
    cumulative optical depth carried from slab to slab; a ray whose transmittance fell below
    `stop_transmittance` reads no further slab (its optical depth held there: the samples past
    it add no weight; at most `stop_transmittance` of weight is dropped, as in the march).
    Colour at the K weight quantiles (fast.py's `composite_quantiles`, as the NDC path)."""
    num_rays, num_samples = t_vals.shape
    device = t_vals.device
    last = t_vals.new_full((num_rays, 1), LAST_DELTA)
    gaps = torch.cat([t_vals[:, 1:] - t_vals[:, :-1], last], 1)  # [R, S]
    gaps.mul_(torch.linalg.norm(rays.directions, dim=-1)[:, None])
    stop_depth = -math.log(stop_transmittance) if stop_transmittance > 0 else math.inf
    optical = t_vals.new_empty(num_rays, num_samples)  # [R, S] cumulative optical depth
    live = torch.arange(num_rays, device=device)  # [A] rays still reading
    carry = t_vals.new_zeros(num_rays)  # [A] their optical depth so far
    occupied = frozen.occupancy.occupied.to(device).reshape(-1)
    read = 0
    for first in range(0, num_samples, DENSE_SLAB):
        end = min(first + DENSE_SLAB, num_samples)
        t = t_vals[:, first:end].index_select(0, live)  # [A, W] (the slab's columns alone)
        coords = frozen.slab_coords(rays, live, t)  # [A * W, 3]
        inside = occupied.take(cell_index(frozen.occupancy.shape, coords))  # [A * W]
        kept = torch.nonzero(inside).squeeze(1)  # samples given a density (the others' is 0)
        read += len(kept)
        sigma = coords.new_zeros(len(coords)).index_copy_(
            0, kept, frozen.sigma(coords.index_select(0, kept))
        )
        tau = sigma.view(t.shape).mul_(gaps[:, first:end].index_select(0, live))  # [A, W]
        running = torch.cumsum(tau, 1).add_(carry[:, None])  # [A, W]
        optical[live, first:end] = running
        if end == num_samples:
            break
        carry = running[:, -1]  # [A]
        stopped = carry >= stop_depth  # [A]
        if bool(stopped.any()):
            optical[live[stopped], end:] = carry[stopped][:, None]
            live, carry = live[~stopped], carry[~stopped]
        if len(live) == 0:
            break

    def colour_fn(ray: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        return frozen.colour_on_rays(rays, ray, t_vals[ray, sample])

    out, coloured = composite_quantiles(optical, t_vals, count, white_bkgd, colour_fn)
    return out, (t_vals.numel(), read, coloured)
