"""The occupancy estimator (render/occupancy.py) and the march through it (render/march.py) on
closed-form density fields: a box of density and a ball, in a box scene and in a contracted
(unbounded) one.

What is asserted, and the tolerances:
- no sample is dropped where its alpha exceeds the threshold: exactly (a box at least a cell
  wide holds a corner of every cell it overlaps, dilation 0; a ball of radius >= half a cell
  diagonal holds a vertex within one cell of every cell it overlaps, dilation 1; see the
  module's docstring);
- the free radius is the Chebyshev distance to the nearest occupied cell less one (exactly up
  to EXACT_FREE, a lower bound beyond), and the block test built on it never rejects a block
  holding a sample in an occupied cell: exactly, against the per-sample lookup;
- march + composite_packed against the plain dense composite of all S samples (density masked
  by the same grid, colour at weight quantiles): without early termination, the same image up
  to float rounding: the plain path multiplies S factors (1 - alpha + 1e-10), the march takes
  exp of a sum of S terms, each ~S float32 roundings: |diff| <= S * 2^-23 * a few < 1e-4 at
  S = 96 (asserted 1e-4; observed ~1e-6); with termination below T = 1e-4 and colour constant
  along each ray, every dropped sample lies behind transmittance T, so the dropped weight, and
  so each channel's change (colours in [0, 1]), is at most T: asserted T + 1e-4.
"""

from __future__ import annotations

import math

import pytest
import torch

import nerfcli.render.march as march_module
from nerfcli.render.composite import (
    alpha_from_density,
    composite_grouped,
    sample_deltas,
    weights_from_alpha,
)
from nerfcli.render.contraction import contract
from nerfcli.render.march import (
    MarchSettings,
    RayCells,
    candidate_blocks,
    composite_packed,
    contracted_rates,
    march,
)
from nerfcli.render.occupancy import EXACT_FREE, FrozenOccupancy, OccupancyGrid, free_radius
from nerfcli.render.samplers import box_interval, stratified_samples, unbounded_samples

BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
STEP = 2.0 / 64  # sample spacing (world units) the grids are built for
THRESHOLD = 1e-4


def box_density(points: torch.Tensor) -> torch.Tensor:
    """sigma [P] = 40 inside [-0.3, 0.25] x [-0.2, 0.4] x [-0.45, 0.1], 0 elsewhere."""
    lo = points.new_tensor([-0.3, -0.2, -0.45])
    hi = points.new_tensor([0.25, 0.4, 0.1])
    return 40.0 * ((points >= lo) & (points <= hi)).all(-1).float()


def ball_density(points: torch.Tensor) -> torch.Tensor:
    """sigma [P] = 30 inside the ball of radius 0.35 at (0.1, -0.05, 0.2), 0 elsewhere."""
    centre = points.new_tensor([0.1, -0.05, 0.2])
    return 30.0 * (torch.linalg.norm(points - centre, dim=-1) <= 0.35).float()


def random_rays(count: int, seed: int, radius: float = 2.5) -> tuple[torch.Tensor, ...]:
    """Rays [R] from a sphere of `radius` towards points near the centre."""
    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(count, 3, generator=g), dim=-1) * radius
    targets = (torch.rand(count, 3, generator=g) - 0.5) * 1.2
    directions = targets - origins
    return origins, directions / torch.linalg.norm(directions, dim=-1, keepdim=True)


def box_samples(origins, directions, count=96):
    t_in, t_out = box_interval(origins, directions, BOX[0], BOX[1], 0.0, 10.0)
    return stratified_samples(t_in, t_out, len(origins), count, False)  # [R, S]


def built_grid(density, cells=32, dilation=0, contraction="none") -> OccupancyGrid:
    grid = OccupancyGrid(BOX, (cells, cells, cells), contraction, THRESHOLD, dilation)
    if contraction == "none":
        grid.update(density, STEP)
    else:  # the density given in world points: grid coords -> box coords first
        from nerfcli.render.contraction import uncontract

        grid.update(lambda c: density(uncontract(2.0 * c.clamp(-0.999, 0.999), contraction)), STEP)
    return grid


@pytest.mark.parametrize(
    "density,dilation", [(box_density, 0), (ball_density, 1)], ids=["box", "ball"]
)
@pytest.mark.parametrize("cells", [16, 32, 45])
def test_no_sample_with_alpha_above_the_threshold_is_dropped(density, dilation, cells):
    grid = built_grid(density, cells, dilation)
    origins, directions = random_rays(600, seed=cells)
    t_vals = box_samples(origins, directions)
    points = origins[:, None] + t_vals[..., None] * directions[:, None]  # [R, S, 3]
    sigma = density(points.reshape(-1, 3))
    significant = 1.0 - torch.exp(-sigma * STEP) > THRESHOLD
    assert int(significant.sum()) > 500  # the rays do cross the density
    kept = grid.lookup(grid.normalize(points.reshape(-1, 3)))
    assert bool(kept[significant].all())
    # and the grid is not trivially full: most empty space is skipped
    assert grid.occupied_fraction() < 0.25


def test_a_ball_smaller_than_half_a_cell_diagonal_is_missed():
    """The stated limit is real: a ball at a cell centre smaller than half the cell diagonal
    holds no vertex, so corner evaluations see nothing (fields like this need a finer grid)."""
    cell = 2.0 / 32
    centre = torch.tensor([-1.0 + 10.5 * cell, -1.0 + 7.5 * cell, -1.0 + 20.5 * cell])

    def small_ball(points):
        return 30.0 * (torch.linalg.norm(points - centre, dim=-1) <= 0.4 * cell).float()

    grid = built_grid(small_ball, 32, dilation=1)
    assert grid.occupied_fraction() == 0.0
    assert not bool(grid.lookup(centre[None]).any())


def test_empty_grid_keeps_everything_and_ema_decays():
    grid = OccupancyGrid(BOX, (8, 8, 8))
    assert bool(grid.lookup(torch.zeros(5, 3)).all()) and grid.occupied_fraction() == 1.0
    grid.update(lambda c: torch.full((len(c),), 10.0), STEP)
    assert grid.occupied_fraction() == 1.0
    for _ in range(200):  # the density left: the moving maximum decays below the threshold
        grid.update(lambda c: torch.zeros(len(c)), STEP)
    assert grid.occupied_fraction() == 0.0
    # a partial update touches only its fraction of the vertices
    before = grid.vertex_density.clone()
    grid.update(lambda c: torch.full((len(c),), 5.0), STEP, fraction=0.25)
    changed = (grid.vertex_density != before * 0.95).float().mean()
    assert 0.2 < float(changed) < 0.3


def test_state_dict_round_trip_restores_shape_and_cells():
    grid = built_grid(ball_density, 12, 1)
    other = OccupancyGrid(BOX, (4, 4, 4), dilation=1)
    other.load_state_dict(grid.state_dict())
    assert other.cells == (12, 12, 12)
    assert torch.equal(other.occupied, grid.occupied)
    points = torch.rand(1000, 3) * 2 - 1
    assert torch.equal(other.lookup(points), grid.lookup(points))


def test_free_radius_is_the_distance_to_the_nearest_occupied_cell():
    """Exact (Chebyshev distance - 1) up to EXACT_FREE, a lower bound beyond, never above."""
    g = torch.Generator().manual_seed(3)
    occupied = torch.zeros(40, 70, 90, dtype=torch.bool)
    occupied[torch.rand(occupied.shape, generator=g) < 2e-4] = True
    radius = free_radius(occupied)
    cells = torch.nonzero(occupied).float()  # [N, 3]
    every = torch.stack(
        torch.meshgrid(*(torch.arange(n) for n in occupied.shape), indexing="ij"), -1
    )
    distance = torch.cdist(every.reshape(-1, 3).float(), cells, p=float("inf")).amin(1)
    distance = distance.view(occupied.shape)  # [Z, Y, X] Chebyshev, 0 on occupied cells
    assert bool((radius <= (distance - 1).clamp(min=0)).all())
    exact = distance <= EXACT_FREE + 1
    assert torch.equal(radius[exact], (distance[exact] - 1).clamp(min=0))
    assert float(radius[~exact].min()) >= EXACT_FREE


@pytest.mark.parametrize("contraction", ["l2", "linf"])
def test_the_contraction_moves_points_at_most_its_lipschitz_bound(contraction):
    """contracted_rates' premise: |contract(x) - contract(y)| <= L |x - y| (L2), L = 1 for l2,
    2 for linf (observed <= 1.1), near and far from the box."""
    g = torch.Generator().manual_seed(0)
    lipschitz = 1.0 if contraction == "l2" else 2.0
    for scale in (0.5, 2.0, 10.0, 100.0):
        x = torch.randn(50000, 3, generator=g) * scale
        y = x + torch.randn(50000, 3, generator=g) * 0.05 * scale
        moved = torch.linalg.norm(contract(x, contraction) - contract(y, contraction), dim=-1)
        assert bool((moved <= lipschitz * torch.linalg.norm(x - y, dim=-1) * (1 + 1e-5)).all())


@pytest.mark.parametrize("contraction", ["none", "l2", "linf"])
@pytest.mark.parametrize("block", [2, 4, 8])
def test_candidate_blocks_never_reject_an_occupied_sample(contraction, block):
    g = torch.Generator().manual_seed(block)
    occupied = torch.zeros(24, 20, 28, dtype=torch.bool)  # random cells in one corner
    occupied[14:20, 3:9, 10:17] = torch.rand(6, 6, 7, generator=g) < 0.3
    frozen = FrozenOccupancy.build(occupied)
    grid = OccupancyGrid(BOX, (28, 20, 24), contraction)
    origins, directions = random_rays(2000, seed=block, radius=0.8)
    rates = None
    if contraction == "none":
        t_vals = box_samples(origins, directions, 97)
    else:
        t_vals = unbounded_samples(origins, directions, BOX[0], BOX[1], 0.0, 64, 33, True, g)
        rates = contracted_rates(directions, 2.0 / (BOX[1] - BOX[0]), contraction)
    cells_of = RayCells(frozen, grid.normalize, origins, directions, rates)
    blocks = candidate_blocks(cells_of, t_vals, block)
    points = origins[:, None] + t_vals[..., None] * directions[:, None]
    fine = frozen.lookup(grid.normalize(points).reshape(-1, 3)).view(t_vals.shape)  # [R, S]
    assert int(fine.sum()) > 20
    in_block = blocks.repeat_interleave(block, 1)[:, : t_vals.shape[1]]
    assert bool(in_block[fine].all())
    assert float(blocks.float().mean()) < 0.7  # the test does reject blocks
    # the cells of the straight rays' affine form are the per-point lookup's
    cells = cells_of(torch.arange(len(t_vals)), t_vals)  # [R, S]
    assert torch.equal(frozen.occupied[cells], fine)


def plain_composite(sigma, t_vals, directions, colour, count, white):
    """The plain path over all samples [R, S]: weights by cumulative product, colour at
    weight quantiles (the TensoRF policy's `_colour_by_quantiles` + `composite_grouped`)."""
    weights = weights_from_alpha(alpha_from_density(sigma, sample_deltas(t_vals, directions)))
    cdf = torch.cumsum(weights, -1)
    total = cdf[:, -1:].clamp(min=1e-10)
    middle = (cdf - 0.5 * weights) / total
    group = torch.clamp((middle * count).long(), 0, count - 1)
    quantiles = (torch.arange(count) + 0.5) / count
    chosen = torch.searchsorted(cdf, (quantiles[None] * total).contiguous()).clamp(
        max=t_vals.shape[1] - 1
    )
    ray = torch.arange(len(t_vals))[:, None].expand_as(chosen)
    colours = colour(ray.reshape(-1), t_vals[ray, chosen].reshape(-1)).view(-1, count, 3)
    return composite_grouped(weights, group, colours, t_vals, white)


@pytest.mark.parametrize("density", [box_density, ball_density], ids=["box", "ball"])
@pytest.mark.parametrize("white", [False, True])
@pytest.mark.parametrize("count", [1, 8])
def test_march_is_the_plain_composite_without_termination(density, white, count):
    grid = built_grid(density, 32, 1)
    frozen = grid.frozen()
    origins, directions = random_rays(500, seed=count)
    t_vals = box_samples(origins, directions)
    # the march's own arithmetic (the densities are discontinuous: a rounding moves a sample
    # across the edge of the box or the ball)
    points = origins[:, None] + directions[:, None] * t_vals[..., None]
    coords = grid.normalize(points).reshape(-1, 3)
    mask = grid.lookup(coords).view(t_vals.shape)
    sigma = density(coords).view(t_vals.shape) * mask

    def colour(ray, t):  # varies along the ray: quantile choices matter
        p = origins[ray] + t[:, None] * directions[ray]
        return torch.sigmoid(3.0 * p + directions[ray])

    settings = MarchSettings(stop_transmittance=0.0)
    packed = march(frozen, grid.normalize, density, origins, directions, t_vals, settings)
    fast, coloured = composite_packed(packed, t_vals, count, colour, white)
    plain = plain_composite(sigma, t_vals, directions, colour, count, white)
    assert float((fast.rgb - plain.rgb).abs().max()) < 1e-4
    assert float((fast.opacity - plain.opacity).abs().max()) < 1e-4
    assert float((fast.depth - plain.depth).abs().max()) < 1e-3
    assert len(packed.ray) < 0.5 * t_vals.numel()  # the empty space was skipped
    assert coloured <= count * int((plain.opacity > 0).sum())


@pytest.mark.parametrize("density", [box_density, ball_density], ids=["box", "ball"])
def test_early_termination_drops_at_most_the_threshold(density):
    grid = built_grid(density, 32, 1)
    origins, directions = random_rays(500, seed=7)
    t_vals = box_samples(origins, directions)

    def colour(ray, t):  # constant along each ray
        return torch.sigmoid(2.0 * directions[ray])

    runs = {}
    for stop in (0.0, 1e-4):
        packed = march(
            grid.frozen(),
            grid.normalize,
            density,
            origins,
            directions,
            t_vals,
            MarchSettings(stop_transmittance=stop),
        )
        runs[stop] = (composite_packed(packed, t_vals, 8, colour, True)[0], len(packed.ray))
    (full, full_count), (cut, cut_count) = runs[0.0], runs[1e-4]
    assert float((full.rgb - cut.rgb).abs().max()) <= 1e-4 + 1e-4
    assert cut_count < 0.8 * full_count  # the surfaces do stop rays
    assert math.isfinite(float(cut.depth.sum()))


@pytest.mark.parametrize("density", [box_density, ball_density], ids=["box", "ball"])
def test_the_probe_changes_no_sample(density, monkeypatch):
    """MarchSettings.probe only judges a bundle from every PROBE_STRIDE-th ray first: a bundle
    the probe passes marches the same samples; with a limit no bundle meets, it declines."""
    monkeypatch.setattr(march_module, "PROBE_STRIDE", 4)
    grid = built_grid(density, 32, 1)
    origins, directions = random_rays(500, seed=9)  # >= 64 probes of 4 rays: probed
    t_vals = box_samples(origins, directions)
    runs = [
        march(
            grid.frozen(),
            grid.normalize,
            density,
            origins,
            directions,
            t_vals,
            MarchSettings(probe=probe),
        )
        for probe in (False, True)
    ]
    for column in ("ray", "sample", "tau"):
        assert torch.equal(getattr(runs[0], column), getattr(runs[1], column))
    calls = []
    blocks = march_module.candidate_blocks

    def counted(cells_of, t, block):
        calls.append(len(t))
        return blocks(cells_of, t, block)

    monkeypatch.setattr(march_module, "candidate_blocks", counted)
    declined = march(
        grid.frozen(),
        grid.normalize,
        density,
        origins,
        directions,
        t_vals,
        MarchSettings(probe=True, dense_limit=-1.0),
    )
    assert declined is None and calls == [125]  # judged from the probe's rays alone
