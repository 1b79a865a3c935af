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
`composite_packed` then composites the kept samples of each ray, packed to the left of a
[R, M] table (M the most any ray kept), with colour at K weight quantiles per ray, as the
TensoRF render policy's `_colour_by_quantiles` + `composite_grouped` do over all S samples.
What a skipped sample would have added: nothing where the grid is exact (zero-alpha cells),
and after termination at most `stop_transmittance` of weight per ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nerfcli.render.composite import LAST_DELTA, Composite
from nerfcli.render.occupancy import FrozenOccupancy, cell_index


@dataclass(frozen=True)
class MarchSettings:
    block: int = 4  # samples a block (the skip test's unit)
    first_blocks: int = 2  # candidate blocks a ray reads before the rest (termination)
    stop_transmittance: float = 1e-4  # early ray termination below this transmittance


@dataclass
class Packed:
    """Kept samples, sorted by ray then sample: ray [V], sample [V] (index into S), tau [V]
    (sigma * delta, the sample's optical depth)."""

    ray: torch.Tensor
    sample: torch.Tensor
    tau: torch.Tensor


ToGrid = Callable[[torch.Tensor], torch.Tensor]  # points [..., 3] -> grid coords [..., 3]
SigmaFn = Callable[[torch.Tensor], torch.Tensor]  # grid coords [P, 3] -> sigma [P]

# Optical depth a sample adds to the termination sums at most (exp(-1e3) is 0 in float32;
# keeps the float64 running sum over a bundle exact to ~1e-8)
TAU_CAP = 1e3


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
            points = self.origins[rows][:, None] + self.directions[rows][:, None] * t[..., None]
            return cell_index(self.occupancy.shape, self.to_grid(points))
        position = torch.addcmul(self.start[rows][:, None], self.step[rows][:, None], t[..., None])
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
    t_first = t_vals[:, firsts]  # [R, NB]
    span = t_vals[:, lasts] - t_first  # [R, NB]
    rows = torch.arange(num_rays, device=t_vals.device)
    free = cells_of.occupancy.free.to(t_vals.device)[cells_of(rows, t_first)]  # [R, NB] cells
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
) -> Packed:
    """The samples of t_vals in occupied cells, up to each ray's termination (module doc)."""
    cells_of = RayCells(occupancy, to_grid, origins, directions, rates)
    blocks = candidate_blocks(cells_of, t_vals, settings.block)  # [R, NB]
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
    t = t_vals[ray_of[:, None], samples.clamp(max=num_samples - 1)]  # [C, B]
    occupied = cells_of.occupancy.occupied.to(t.device)[cells_of(ray_of, t)]  # [C, B]
    kept = torch.nonzero((occupied & valid).view(-1)).squeeze(1)  # [P]
    ray = ray_of[torch.div(kept, block, rounding_mode="floor")]  # [P]
    sample = samples.view(-1)[kept]  # [P]
    directions = cells_of.directions[ray]  # [P, 3]
    # o + d t as sample_points computes it (the same bits: a sample on the box's face stays
    # inside it, as in the plain path)
    coords = cells_of.to_grid(cells_of.origins[ray] + directions * t.view(-1)[kept][:, None])
    after = (sample + 1).clamp(max=num_samples - 1)  # [P]
    gap = t_vals[ray, after] - t.view(-1)[kept]  # [P]
    gap = torch.where(sample == num_samples - 1, LAST_DELTA, gap)
    norms = torch.linalg.norm(directions, dim=-1)  # [P]
    tau = sigma_fn(coords) * gap * norms  # [P]
    # the optical depth before each sample: a float64 running sum over the bundle, less its
    # value where the sample's ray starts (taus capped: exp(-TAU_CAP) is already 0)
    capped = tau.clamp(max=TAU_CAP).double()  # [P]
    running = torch.cumsum(capped, 0) - capped  # [P] exclusive
    counts = torch.bincount(ray, minlength=num_rays)  # [R]
    starts = torch.cumsum(counts, 0) - counts  # [R]
    base = (
        running.index_select(0, starts.clamp(max=max(len(kept) - 1, 0))[ray])
        if len(kept)
        else running
    )
    before = running - base  # [P]
    total = torch.zeros(num_rays, dtype=torch.float64, device=t_vals.device)
    total.index_add_(0, ray, capped)  # [R]
    if optical is not None:
        before = before + optical.double()[ray]
        total = total + optical.double()
    lit = before < stop_depth  # [P]
    return Packed(ray[lit], sample[lit], tau[lit]), total.float()


def pack_table(packed: Packed, num_rays: int) -> tuple[torch.Tensor, int]:
    """(column [V], width M): where each kept sample sits in its ray's row of a [R, M] table
    that packs each ray's samples to the left, in order."""
    counts = torch.bincount(packed.ray, minlength=num_rays)  # [R]
    starts = torch.cumsum(counts, 0) - counts  # [R]
    column = torch.arange(len(packed.ray), device=packed.ray.device) - starts[packed.ray]
    width = max(1, int(counts.max())) if num_rays else 1
    return column, width


ColourFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # ray [P], t [P] -> rgb [P, 3]


def composite_packed(
    packed: Packed,
    t_vals: torch.Tensor,  # [R, S]
    count: int,  # K colour quantiles per ray
    colour_fn: ColourFn,
    white_bkgd: bool,
) -> tuple[Composite, int]:
    """The composite [R] of the kept samples (weights [R, M] over the packed table), colour
    evaluated once per distinct quantile sample of each ray with any opacity; and how many
    colours were evaluated."""
    num_rays = t_vals.shape[0]
    row, (column, width) = packed.ray, pack_table(packed, num_rays)
    optical = t_vals.new_zeros(num_rays, width)  # [R, M]
    optical[row, column] = packed.tau
    depths = t_vals.new_zeros(num_rays, width)  # [R, M]
    depths[row, column] = t_vals[packed.ray, packed.sample]
    torch.cumsum(optical, 1, out=optical)
    # minus the transmittance before each sample and after it: ntrans[:, s + 1] = -T_s
    ntrans = torch.empty(num_rays, width + 1, dtype=optical.dtype, device=optical.device)
    ntrans[:, 0] = -1.0
    torch.exp(optical.neg_(), out=ntrans[:, 1:])
    ntrans[:, 1:].neg_()
    weights = ntrans[:, 1:] - ntrans[:, :-1]  # [R, M] T_{s-1} - T_s
    opacity = ntrans[:, -1] + 1.0  # [R]
    rgb, coloured = _quantile_colours(ntrans, opacity, depths, count, colour_fn)  # [R, 3]
    depth = torch.sum(weights * depths, 1)  # [R]
    disparity = 1.0 / torch.clamp(depth / torch.clamp(opacity, min=1e-10), min=1e-10)
    if white_bkgd:
        rgb = rgb + (1.0 - opacity[:, None])
    return Composite(rgb, depth, disparity, opacity, weights), coloured


def _quantile_colours(
    ntrans: torch.Tensor,  # [R, M + 1] minus the transmittance before/after each sample
    opacity: torch.Tensor,  # [R]
    depths: torch.Tensor,  # [R, M]
    count: int,
    colour_fn: ColourFn,
) -> tuple[torch.Tensor, int]:
    """rgb [R, 3] = sum_k group weight_k * colour at quantile k (the TensoRF policy's rule:
    quantile k's colour at the first sample whose cdf reaches (k + 0.5) / K of the opacity,
    group k the samples whose mass midpoint lies in [k / K, (k + 1) / K)); colours evaluated."""
    num_rays, width = depths.shape
    total = opacity.clamp(min=1e-10)[:, None]  # [R, 1]
    fractions = torch.arange(count + 1, dtype=ntrans.dtype, device=ntrans.device) / count
    targets = (fractions[:-1] + 0.5 / count)[None] * total - 1.0  # [R, K]
    chosen = (torch.searchsorted(ntrans, targets.contiguous()) - 1).clamp(0, width - 1)  # [R, K]
    midpoints = ntrans[:, 1:] + ntrans[:, :-1]  # [R, M] ascending
    bounds = 2.0 * (fractions[1:-1][None] * total - 1.0)  # [R, K - 1]
    inner = torch.searchsorted(midpoints, bounds.contiguous())  # [R, K - 1]
    edges = torch.cat(
        [inner.new_zeros(num_rays, 1), inner, inner.new_full((num_rays, 1), width)], 1
    )  # [R, K + 1]
    at_edges = torch.gather(ntrans, 1, edges)  # [R, K + 1]
    group_weights = at_edges[:, 1:] - at_edges[:, :-1]  # [R, K]
    first = torch.ones_like(chosen, dtype=torch.bool)  # [R, K] first of equal neighbours
    torch.ne(chosen[:, 1:], chosen[:, :-1], out=first[:, 1:])
    first &= (opacity > 0)[:, None]
    picked = torch.nonzero(first.view(-1)).squeeze(1)  # [U]
    ray_index = torch.div(picked, count, rounding_mode="floor")  # [U]
    colour = colour_fn(ray_index, depths.view(-1)[ray_index * width + chosen.view(-1)[picked]])
    # each quantile takes the colour of the last distinct pick at or before it
    source = torch.cumsum(first.view(-1), 0) - 1  # [R * K]
    colours = colour.new_zeros(max(len(colour), 1), 3)
    colours[: len(colour)] = colour
    per_quantile = colours[source.clamp(min=0)].view(num_rays, count, 3)  # [R, K, 3]
    per_quantile = per_quantile * (opacity > 0)[:, None, None]
    rgb = torch.sum(group_weights[..., None] * per_quantile, 1)  # [R, 3]
    return rgb, len(picked)
