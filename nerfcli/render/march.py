"""Sampling through an occupancy grid with early ray termination, and compositing what is left
(the fast no-grad render of scenes in world coordinates: boxes and unbounded scenes).

Given a ray bundle's sample depths t [R, S] (the plain path's own samples), `march` keeps only
the samples in occupied cells of a `FrozenOccupancy` and stops each ray once its transmittance
falls below `stop_transmittance`, without ever building [R, S] points:
1. blocks of `block` consecutive samples are tested on the coarse grid (the fine grid pooled
   and dilated by one coarse cell) at their first sample: every sample of a block lies within
   one coarse cell of it when the block's chord (first to last sample, in grid coordinates,
   L-infinity) is at most a coarse cell (the samples lie on a straight segment in the box;
   with a contraction, half a cell, the curve's bend staying inside the other half), and
   blocks with a longer chord are always kept; so a sample in an occupied fine cell is never
   in a rejected block (tested against the per-sample lookup);
2. in rounds, each live ray takes its next `window` candidate blocks (the window doubling
   every round): the samples in occupied fine cells get their density, their optical depth
   sigma * delta is accumulated per ray, samples after the transmittance fell below the
   threshold are dropped, and rays past it (or out of candidate blocks) leave.
`composite_packed` then composites the kept samples of each ray, packed to the left of a
[R, M] table (M the most any ray kept), with colour at K weight quantiles per ray, as the
TensoRF render policy's `_colour_by_quantiles` + `composite_grouped` do over all S samples.
What a skipped sample would have added: nothing where the grid is exact (zero-alpha cells),
and after termination at most `stop_transmittance` of weight per ray.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nerfcli.render.composite import LAST_DELTA, Composite
from nerfcli.render.occupancy import FrozenOccupancy


@dataclass(frozen=True)
class MarchSettings:
    block: int = 8  # samples per block tested on the coarse grid
    window: int = 2  # candidate blocks per ray in the first round (doubling each round)
    stop_transmittance: float = 1e-4  # early ray termination below this transmittance
    curved: bool = False  # samples on a contracted curve (unbounded): half-cell chords


@dataclass
class Packed:
    """Kept samples, sorted by ray then sample: ray [V], sample [V] (index into S), tau [V]
    (sigma * delta, the sample's optical depth)."""

    ray: torch.Tensor
    sample: torch.Tensor
    tau: torch.Tensor


ToGrid = Callable[[torch.Tensor], torch.Tensor]  # points [..., 3] -> grid coords [..., 3]
SigmaFn = Callable[[torch.Tensor], torch.Tensor]  # grid coords [P, 3] -> sigma [P]


def block_rows(t_vals: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """t_vals [R, S] and the depth of each sample's successor (inf after the last), padded with
    inf to NB * block samples and viewed as blocks: [R, NB, B] each."""
    num_rays, num_samples = t_vals.shape
    num_blocks = -(-num_samples // block)
    padded = t_vals.new_full((num_rays, num_blocks * block + 1), float("inf"))
    padded[:, :num_samples] = t_vals
    shape = (num_rays, num_blocks, block)
    return padded[:, :-1].view(shape), padded[:, 1:].reshape(shape)


def candidate_blocks(
    occupancy: FrozenOccupancy,
    to_grid: ToGrid,
    origins: torch.Tensor,  # [R, 3]
    directions: torch.Tensor,  # [R, 3]
    t_vals: torch.Tensor,  # [R, S]
    settings: MarchSettings,
) -> torch.Tensor:
    """Blocks [R, NB] (NB = ceil(S / block)) that may hold a sample in an occupied fine cell."""
    num_samples = t_vals.shape[1]
    block = settings.block
    firsts = torch.arange(0, num_samples, block, device=t_vals.device)  # [NB]
    lasts = (firsts + block - 1).clamp(max=num_samples - 1)  # [NB]
    ends = torch.stack([t_vals[:, firsts], t_vals[:, lasts]], -1)  # [R, NB, 2]
    points = origins[:, None, None] + directions[:, None, None] * ends[..., None]  # [R,NB,2,3]
    grid = to_grid(points)  # [R, NB, 2, 3]
    chord = (grid[..., 1, :] - grid[..., 0, :]).abs().amax(-1)  # [R, NB]
    limit = occupancy.coarse_size * (0.5 if settings.curved else 1.0)
    near = occupancy.lookup_coarse(grid[..., 0, :])  # [R, NB]
    return near | (chord > limit)


def march(
    occupancy: FrozenOccupancy,
    to_grid: ToGrid,
    sigma_fn: SigmaFn,
    origins: torch.Tensor,  # [R, 3]
    directions: torch.Tensor,  # [R, 3]
    t_vals: torch.Tensor,  # [R, S]
    settings: MarchSettings,
) -> Packed:
    """The samples of t_vals in occupied cells, up to each ray's termination (module doc)."""
    num_rays, num_samples = t_vals.shape
    block = settings.block
    blocks = candidate_blocks(occupancy, to_grid, origins, directions, t_vals, settings)
    t_blocks, t_next = block_rows(t_vals, block)  # [R, NB, B]
    norms = torch.linalg.norm(directions, dim=-1)  # [R]
    rank = torch.cumsum(blocks, 1) - 1  # [R, NB] rank of each candidate block in its ray
    total = rank[:, -1] + 1  # [R] candidate blocks per ray
    optical = torch.zeros(num_rays, device=t_vals.device)  # [R] optical depth so far
    live = torch.nonzero(total > 0).squeeze(1)  # [A]
    stop_depth = -float(torch.log(torch.tensor(settings.stop_transmittance)))
    offsets = torch.arange(block, device=t_vals.device)  # [B]
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    first, window = 0, settings.window
    while len(live):
        live_rank = rank[live] - first  # [A, NB]
        chosen = blocks[live] & (live_rank >= 0) & (live_rank < window)  # [A, NB]
        pair_live, pair_block = torch.nonzero(chosen, as_tuple=True)  # [C], row-major
        rays = live[pair_live]  # [C]
        t = t_blocks[rays, pair_block]  # [C, B]
        # o + d t as sample_points computes it (the same bits: a sample on the box's face
        # stays inside it, as in the plain path)
        points = origins[rays][:, None] + directions[rays][:, None] * t[..., None]  # [C, B, 3]
        coords = to_grid(points)  # [C, B, 3]
        keep = occupancy.lookup(coords) & torch.isfinite(t)  # [C, B]
        keep_index = torch.nonzero(keep.view(-1)).squeeze(1)  # [P]
        gap = t_next[rays, pair_block] - t  # [C, B]
        gap = torch.where(torch.isfinite(gap), gap, torch.full_like(gap, LAST_DELTA))
        tau_rows = torch.zeros_like(t)  # [C, B]
        tau_rows.view(-1)[keep_index] = sigma_fn(coords.view(-1, 3)[keep_index])
        tau_rows *= gap * norms[rays][:, None]
        table = t.new_zeros(len(live) * window, block)  # [A * W, B], ray-major
        table[pair_live * window + live_rank[pair_live, pair_block]] = tau_rows
        table = table.view(len(live), window * block)  # [A, W * B]
        before = optical[live][:, None] + torch.cumsum(table, 1) - table  # [A, W * B]
        row = (pair_live * window + live_rank[pair_live, pair_block])[:, None] * block + offsets
        lit = keep & (before.view(-1)[row] < stop_depth)  # [C, B] transmittance still above
        samples = pair_block[:, None] * block + offsets  # [C, B]
        parts.append((rays[:, None].expand_as(samples)[lit], samples[lit], tau_rows[lit]))
        optical[live] += table.sum(1)
        first += window
        window *= 2
        live = live[(optical[live] < stop_depth) & (total[live] > first)]
    if not parts:
        empty = torch.zeros(0, dtype=torch.long, device=t_vals.device)
        return Packed(empty, empty, torch.zeros(0, device=t_vals.device))
    ray, sample, tau = (torch.cat(column) for column in zip(*parts, strict=True))
    order = torch.argsort(ray * num_samples + sample)
    return Packed(ray[order], sample[order], tau[order])


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
