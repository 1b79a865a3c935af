"""Sampling through an occupancy grid with early ray termination, and compositing what is left
(the fast no-grad render of scenes in world coordinates: boxes and unbounded scenes).

Given a ray bundle's sample depths t [R, S] (the plain path's own samples), `march` keeps only
the samples in occupied cells of a `FrozenOccupancy` and stops each ray once its transmittance
falls below `stop_transmittance`, without ever building [R, S] points:
in rounds over the live rays, each at its next sample i:
1. skip: where the sample's cell has a free radius r > 0 (`free_radius`: every point within
   r cells of it, on each axis, is in an unoccupied cell), the ray jumps to its first sample
   at or past t_i + r * reach, reach the depth a ray covers per cell (from `rates`, grid units
   per unit t along each axis: exact for a box scene, where grid coords are affine in t; an
   upper bound through the contraction's Lipschitz constant for unbounded scenes); no sample
   of an occupied cell is ever jumped over (tested against the per-sample lookup);
2. dense step: where r = 0 (the cell or a neighbour occupied), the ray reads its next W
   samples (W doubling with each dense step of the march, to `max_window`): the samples in
   occupied cells get their density, their optical depth sigma * delta is accumulated, samples
   after the transmittance fell below the threshold are dropped;
rays past the threshold or their last sample leave. Each round touches [A] or [A, W] tensors
only: no [R, S] points, no per-block bookkeeping.
`composite_packed` (nerfcli.render.packed) then composites the kept samples of each ray, as
flat arrays, with colour at K weight quantiles per ray, as the
TensoRF render policy's `_colour_by_quantiles` + `composite_grouped` do over all S samples.
What a skipped sample would have added: nothing where the grid is exact (zero-alpha cells),
and after termination at most `stop_transmittance` of weight per ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nerfcli.render.composite import LAST_DELTA
from nerfcli.render.occupancy import FrozenOccupancy, cell_index
from nerfcli.render.packed import TAU_CAP, Packed, composite_packed, optical_before

__all__ = ["MarchSettings", "Packed", "RayCells", "candidate_blocks", "composite_packed", "march"]


@dataclass(frozen=True)
class MarchSettings:
    block: int = 8  # samples a block (the skip test's unit; 8 measured 6% faster than 4 on lego)
    first_blocks: int = 2  # candidate blocks a ray reads before the rest (termination)
    stop_transmittance: float = 1e-4  # early ray termination below this transmittance
    # above this fraction of candidate blocks (a fog: nearly every sample in an occupied
    # cell), `march` declines (None) and the caller reads every sample instead (TensoRF:
    # frozen.render_dense): measured on a 198-step fox, marched bundles past 0.9 rendered
    # 0.65-0.8x as fast as the plain path, those at 0.81-0.86 1.4-5x (bench/README.md)
    dense_limit: float = 0.9
    # judge a bundle from every PROBE_STRIDE-th ray first (for grids likely to be a fog: the
    # probe costs a sparse grid such as lego's 3-5% and saves a 4-minute cup's 5%)
    probe: bool = False


# With MarchSettings.probe, a bundle is first judged from every PROBE_STRIDE-th ray
# (neighbouring pixels: a fair sample), so a fog is declined at 1/PROBE_STRIDE of the candidate
# test's cost (6% of a 4-minute cup's render before); a bundle the probe passes is judged again
# on all of its rays.
PROBE_STRIDE = 8

ToGrid = Callable[[torch.Tensor], torch.Tensor]  # points [..., 3] -> grid coords [..., 3]
SigmaFn = Callable[[torch.Tensor], torch.Tensor]  # grid coords [P, 3] -> sigma [P]


def straight_rates(to_grid: ToGrid, origins: torch.Tensor, directions: torch.Tensor):
    """Grid units per unit t along each axis [R, 3] of rays whose grid coords are affine in t
    (a box scene: to_grid(o + d t) = a + b t, so |b| exactly)."""
    return (to_grid(origins + directions) - to_grid(origins)).abs()


def contracted_rates(directions: torch.Tensor, box_scale: torch.Tensor, contraction: str):
    """An upper bound on grid units per unit t [R, 3] with a contraction (grid = contract(x) / 2,
    x = box coords, x's rate |d * box_scale|): the l2 contraction is 1-Lipschitz in the L2
    norm (its Jacobian's singular values are 1 / |x|^2 and (2 - 1 / |x|) / |x|, both <= 1), so
    a stretch of ray moves the grid coords (L2, so on every axis) by at most half its length
    in box coords; the linf one is taken as 2-Lipschitz (checked on random pairs in
    tests/unit/test_occupancy.py)."""
    lipschitz = 1.0 if contraction == "l2" else 2.0
    rate = 0.5 * lipschitz * torch.linalg.norm(directions * box_scale, dim=-1)  # [R]
    return rate[:, None].expand(-1, 3)


class RayCells:
    """The cell [...] (flat index into the occupancy grid) of the sample at depth t of ray r:
    for rays whose grid coords are affine in t (a box scene, rates None) as start + step * t
    in cell units, floored and clamped (the cell `cell_index` gives, but for roundings at a
    cell's face, where a field trilinear in the cells has the alpha of both cells' common
    corners: both are below the threshold, or both cells occupied); through to_grid and
    cell_index otherwise."""

    def __init__(self, occupancy: FrozenOccupancy, to_grid: ToGrid, origins, directions, rates):
        self.occupancy, self.to_grid = occupancy, to_grid
        self.origins, self.directions = origins, directions
        cells = occupancy.cells.to(origins.device)  # [3] (x, y, z)
        self.affine = rates is None
        if self.affine:
            start = to_grid(origins)  # [R, 3]
            step = to_grid(origins + directions) - start  # [R, 3]
            self.rates = step.abs()
            self.start = (start + 1.0) * (0.5 * cells)  # [R, 3] in cells
            self.step = step * (0.5 * cells)  # [R, 3]
            cz, cy, cx = occupancy.shape
            self.strides = origins.new_tensor([1.0, cx, cx * cy])  # [3] exact in float32
            self.top = cells - 1.0
        else:
            self.rates = rates

    def __call__(self, rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Flat cells [C, B] of the samples at depths t [C, B] of rays rows [C]."""
        if not self.affine:
            origins = self.origins.index_select(0, rows)[:, None]  # [C, 1, 3]
            points = origins + self.directions.index_select(0, rows)[:, None] * t[..., None]
            return cell_index(self.occupancy.shape, self.to_grid(points))
        start, step = self.start.index_select(0, rows), self.step.index_select(0, rows)
        position = torch.addcmul(start[:, None], step[:, None], t[..., None])  # [C, B, 3]
        position = torch.minimum(position.floor_().clamp_(min=0.0), self.top)  # [C, B, 3]
        return (position @ self.strides).long()  # [C, B]


def candidate_blocks(
    cells_of: RayCells,
    t_vals: torch.Tensor,  # [R, S]
    block: int,
) -> torch.Tensor:
    """Blocks [R, NB] (NB = ceil(S / block)) that may hold a sample in an occupied cell: those
    whose samples do not all lie within the free radius of the block's first sample."""
    num_rays, num_samples = t_vals.shape
    firsts = torch.arange(0, num_samples, block, device=t_vals.device)  # [NB]
    lasts = (firsts + block - 1).clamp(max=num_samples - 1)  # [NB]
    t_first = t_vals.index_select(1, firsts)  # [R, NB]
    span = t_vals.index_select(1, lasts) - t_first  # [R, NB]
    rows = torch.arange(num_rays, device=t_vals.device)
    free = cells_of.occupancy.free.to(t_vals.device).take(cells_of(rows, t_first))  # [R, NB]
    cell = cells_of.occupancy.cell_size.to(t_vals.device)  # [3]
    # depth a ray covers per cell of free radius (a hair less: roundings)
    reach = (cell / cells_of.rates.clamp(min=1e-12)).amin(-1) * (1.0 - 1e-4)  # [R]
    return free * reach[:, None] <= span


def march(
    occupancy: FrozenOccupancy,
    to_grid: ToGrid,
    sigma_fn: SigmaFn,
    origins: torch.Tensor,  # [R, 3]
    directions: torch.Tensor,  # [R, 3]
    t_vals: torch.Tensor,  # [R, S] increasing along each ray
    settings: MarchSettings,
    rates: torch.Tensor | None = None,  # [R, 3] grid units per unit t (None: straight_rates)
) -> Packed | None:
    """The samples of t_vals in occupied cells, up to each ray's termination (module doc);
    None when more than settings.dense_limit of the blocks may hold one."""
    if settings.probe and len(origins) >= PROBE_STRIDE * 64:  # judged from a few rays first
        probe = slice(None, None, PROBE_STRIDE)
        few = RayCells(
            occupancy,
            to_grid,
            origins[probe],
            directions[probe],
            None if rates is None else rates[probe],
        )
        if (
            float(candidate_blocks(few, t_vals[probe], settings.block).float().mean())
            > settings.dense_limit
        ):
            return None
    cells_of = RayCells(occupancy, to_grid, origins, directions, rates)
    blocks = candidate_blocks(cells_of, t_vals, settings.block)  # [R, NB]
    if blocks.numel() and float(blocks.float().mean()) > settings.dense_limit:
        return None
    rank = torch.cumsum(blocks, 1)  # [R, NB] 1 + rank of each candidate block in its ray
    stop = settings.stop_transmittance
    stop_depth = -math.log(stop) if stop > 0 else math.inf
    parts: list[Packed] = []
    optical, done, window = None, 0, settings.first_blocks
    while True:  # windows of candidate blocks, doubling, until no ray has any left
        chosen = blocks & (rank > done) & (rank <= done + window)  # [R, NB]
        if optical is not None:
            chosen &= (optical < stop_depth)[:, None]
        if not bool(chosen.any()):
            break
        packed, optical = _read_blocks(
            chosen, cells_of, sigma_fn, t_vals, settings.block, optical, stop_depth
        )
        parts.append(packed)
        done, window = done + window, 2 * window
    if len(parts) == 1:
        return parts[0]
    if not parts:
        empty = torch.zeros(0, dtype=torch.long, device=t_vals.device)
        return Packed(empty, empty, torch.zeros(0, device=t_vals.device))
    ray, sample, tau = (
        torch.cat(column) for column in zip(*((p.ray, p.sample, p.tau) for p in parts), strict=True)
    )
    order = torch.argsort(ray * t_vals.shape[1] + sample)
    return Packed(ray[order], sample[order], tau[order])


def _read_blocks(
    chosen: torch.Tensor,  # [R, NB] blocks to read
    cells_of: RayCells,
    sigma_fn: SigmaFn,
    t_vals: torch.Tensor,  # [R, S]
    block: int,
    optical: torch.Tensor | None,  # [R] optical depth before these blocks (None: 0)
    stop_depth: float,
) -> tuple[Packed, torch.Tensor]:
    """The samples of the chosen blocks in occupied cells with their optical depth, those
    before each ray's transmittance fell below the threshold (in ray, sample order), and the
    rays' optical depth after the blocks [R] (each sample's capped at TAU_CAP)."""
    num_rays, num_samples = t_vals.shape
    ray_of, block_of = torch.nonzero(chosen, as_tuple=True)  # [C] row-major
    samples = block_of[:, None] * block + torch.arange(block, device=t_vals.device)  # [C, B]
    valid = samples < num_samples  # [C, B]
    flat = ray_of[:, None] * num_samples + samples.clamp(max=num_samples - 1)  # [C, B]
    t = t_vals.take(flat)  # [C, B]
    occupied = cells_of.occupancy.occupied.to(t.device).take(cells_of(ray_of, t))  # [C, B]
    kept = torch.nonzero((occupied & valid).view(-1)).squeeze(1)  # [P]
    ray = ray_of.index_select(0, torch.div(kept, block, rounding_mode="floor"))  # [P]
    sample = samples.view(-1).index_select(0, kept)  # [P]
    t_kept = t.view(-1).index_select(0, kept)  # [P]
    directions = cells_of.directions.index_select(0, ray)  # [P, 3]
    # o + d t as sample_points computes it (the same bits: a sample on the box's face stays
    # inside it, as in the plain path)
    coords = cells_of.to_grid(cells_of.origins.index_select(0, ray) + directions * t_kept[:, None])
    after = flat.view(-1).index_select(0, kept) + (sample < num_samples - 1)  # [P]
    gap = t_vals.take(after) - t_kept  # [P]
    gap = torch.where(sample == num_samples - 1, LAST_DELTA, gap)
    norms = torch.linalg.norm(directions, dim=-1)  # [P]
    tau = sigma_fn(coords) * gap * norms  # [P]
    before = optical_before(ray, tau, num_rays)  # [P] float64
    capped = tau.clamp(max=TAU_CAP).double()  # [P]
    total = torch.zeros(num_rays, dtype=torch.float64, device=t_vals.device)
    total.index_add_(0, ray, capped)  # [R]
    if optical is not None:
        before = before + optical.double().index_select(0, ray)
        total = total + optical.double()
    lit = before < stop_depth  # [P]
    return Packed(ray[lit], sample[lit], tau[lit]), total.float()
