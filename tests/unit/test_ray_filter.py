"""rays_meeting (nerfcli/render/ray_filter.py): no ray that meets an occupied cell is dropped
(against a walk 40x finer on random grids), rays far from every occupied cell are, and the
compiled loop and the tensor fallback agree with that."""

from __future__ import annotations

import math

import pytest
import torch

from nerfcli.render import compiled, ray_filter
from nerfcli.render.samplers import box_interval

LO = torch.tensor([-1.0, -1.5, -0.5])
HI = torch.tensor([1.0, 1.5, 0.5])


@pytest.fixture(params=["compiled", "tensors"])
def path(request, monkeypatch):
    if request.param == "compiled" and not compiled.available():
        pytest.skip("numba is not installed: the compiled loop cannot run")
    if request.param == "tensors":
        monkeypatch.setattr(compiled, "_loop", lambda: None)
    return request.param


def _rays(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays from a sphere of radius 4 around the box towards random points inside it."""
    g = torch.Generator().manual_seed(seed)
    start = torch.nn.functional.normalize(torch.randn(count, 3, generator=g), dim=-1) * 4.0
    aim = LO + (HI - LO) * torch.rand(count, 3, generator=g)
    direction = (aim - start) * (0.5 + torch.rand(count, 1, generator=g))  # not unit length
    return start, direction


def _fine_walk(cells: torch.Tensor, origins, directions, t_in, t_out) -> torch.Tensor:
    """Rays [R] with a point in an occupied cell, sampled 1/40 of a cell apart."""
    cz, cy, cx = cells.shape
    size = torch.tensor([cx, cy, cz], dtype=torch.float32)
    per_unit = size / (HI - LO)
    spacing = float((1.0 / per_unit).min()) / 40.0
    length = float(((t_out - t_in) * torch.linalg.norm(directions, dim=-1)).max())
    u = torch.linspace(0.0, 1.0, int(math.ceil(length / spacing)) + 1)
    hits = []
    for part in torch.arange(len(origins)).split(500):
        t = t_in[part, None] + (t_out - t_in)[part, None] * u  # [r, N]
        points = origins[part, None] + directions[part, None] * t[..., None]
        index = ((points - LO) * per_unit).floor().long()
        inside = ((index >= 0) & (index < size.long())).all(-1)
        index = torch.minimum(index.clamp(min=0), size.long() - 1)
        hits.append((cells[index[..., 2], index[..., 1], index[..., 0]] & inside).any(1))
    return torch.cat(hits)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_ray_that_meets_an_occupied_cell_is_dropped(path, seed):
    g = torch.Generator().manual_seed(seed)
    cells = torch.rand(26, 58, 42, generator=g) < 2e-4  # a dozen scattered cells
    cells[13, 29, 21] = True
    origins, directions = _rays(8000, seed)
    t_in, t_out = box_interval(origins, directions, LO, HI, 0.0, 100.0)
    kept = ray_filter.rays_meeting(cells, LO, HI, origins, directions, 0.0, 100.0, coarse=3)
    meets = _fine_walk(cells, origins, directions, t_in, t_out)
    assert int(meets.sum()) > 40  # the test sees rays that meet cells
    assert not bool((meets & ~kept).any())
    # and it drops rays: most of these pass far from the few occupied cells
    assert float(kept.float().mean()) < 0.7


def test_one_occupied_cell_keeps_the_rays_through_it_and_drops_the_far_ones(path):
    cells = torch.zeros(32, 48, 32, dtype=torch.bool)
    cells[16, 24, 16] = True  # the cell at the box's centre
    # along x: through the centre, then 0.49 and 0.31 off it in z (four and two coarse cells)
    origins = torch.tensor([[-3.0, 0.01, 0.01], [-3.0, 0.01, 0.5 - 1e-3], [-3.0, 0.01, -0.3]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    t_in, t_out = box_interval(origins, directions, LO, HI, 0.0, 100.0)
    kept = ray_filter.rays_meeting(cells, LO, HI, origins, directions, 0.0, 100.0, coarse=4)
    assert kept.tolist() == [True, False, False]
    empty = torch.zeros_like(cells)
    none = ray_filter.rays_meeting(empty, LO, HI, origins, directions, 0.0, 100.0)
    assert not bool(none.any())


def test_a_ray_that_misses_the_box_is_dropped(path):
    cells = torch.zeros(8, 8, 8, dtype=torch.bool)
    cells[4, 4, 4] = True
    origins = torch.tensor([[-3.0, 5.0, 0.0]])
    directions = torch.tensor([[1.0, 0.0, 0.0]])
    t_in, t_out = box_interval(origins, directions, LO, HI, 0.0, 100.0)
    assert float(t_in[0]) == float(t_out[0])  # box_interval's miss: an empty segment
    kept = ray_filter.rays_meeting(cells, LO, HI, origins, directions, 0.0, 100.0, coarse=2)
    assert kept.tolist() == [False]


def test_coarse_cells_pool_and_dilate():
    cells = torch.zeros(9, 9, 9, dtype=torch.bool)
    cells[0, 0, 0] = True
    coarse = ray_filter.coarse_cells(cells, 4)
    assert coarse.shape == (3, 3, 3)  # ceil(9 / 4)
    expected = torch.zeros(3, 3, 3, dtype=torch.bool)
    expected[:2, :2, :2] = True  # the corner coarse cell and its neighbours
    assert torch.equal(coarse, expected)
