"""TensoRF's box shrink (box scenes): the box crops to the alpha mask's cells at each mask
update, the field inside it is unchanged, later upsamplings spread the scheduled voxel count over
the smaller box, and checkpoints carry the shrunk box."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerfcli.models.registry import build_model
from nerfcli.models.tensorf import TensorfModel, grid_schedule
from tests.unit.test_tensorf import renders_from_above, tiny_config

BOX = np.array([[-2.0, -1.5, -1.0], [2.0, 1.5, 3.0]], dtype=np.float32)
# the blob's vertices (inclusive) at grid_init 11 x 9 x 7: x 3..6, y 2..5, z 2..4
BLOB = ((3, 6), (2, 5), (2, 4))


def blob_model(*overrides: str) -> TensorfModel:
    """A world model whose density is > 0 only near the vertices BLOB (one factor mode: the xy
    plane times the z line; the other modes zero), so its occupied cells are known."""
    torch.manual_seed(0)
    model = build_model(
        tiny_config("model.tensorf.density_activation=relu", *overrides, ndc=False),
        scene_box=BOX,
    )
    (x0, x1), (y0, y1), (z0, z1) = BLOB
    with torch.no_grad():
        for plane, line in zip(model.field.density_planes, model.field.density_lines):
            plane.zero_()
            line.zero_()
        model.field.density_planes[0][0, :, y0 : y1 + 1, x0 : x1 + 1] = 0.5
        model.field.density_lines[0][0, :, z0 : z1 + 1, 0] = 1.0
    return model


def world_points(count: int, seed: int = 3) -> torch.Tensor:
    """Points [P, 3] spread over BOX."""
    generator = torch.Generator().manual_seed(seed)
    lo, hi = torch.from_numpy(BOX[0]), torch.from_numpy(BOX[1])
    return lo + torch.rand(count, 3, generator=generator) * (hi - lo)


def density_at(model: TensorfModel, points: torch.Tensor) -> torch.Tensor:
    """sigma [P] at world points (0 outside the field's box)."""
    field = model.field
    coords = field.normalize(points)
    inside = (coords.abs() <= 1.0).all(-1)
    sigma = torch.zeros(len(points))
    with torch.no_grad():
        sigma[inside] = field.activate_density(field.density_feature(coords[inside]))
    return sigma


def test_shrink_crops_to_the_occupied_cells_and_keeps_the_field():
    model = blob_model()
    model.update_alpha_mask()
    points = world_points(20_000)
    before = density_at(model, points)
    old_lo, old_hi = model.field.aabb.clone()
    assert model.shrink() is True
    lo, hi = model.field.aabb
    # the blob's cells (vertices 3..6 in x, ...; density reaches one cell past them) plus the
    # one-cell margin: vertices 1..8 x 0..7 x 0..6 of the 11 x 9 x 7 grid
    voxel = (old_hi - old_lo) / torch.tensor([10.0, 8.0, 6.0])
    torch.testing.assert_close(lo, old_lo + torch.tensor([1.0, 0.0, 0.0]) * voxel)
    torch.testing.assert_close(hi, old_lo + torch.tensor([8.0, 7.0, 6.0]) * voxel)
    assert model.field.resolution == (8, 8, 7)
    assert model.field.density_planes[0].shape[2:] == (8, 8)
    assert model.field.app_lines[0].shape[2] == 7
    assert tuple(model.field.alpha_mask.shape) == (6, 7, 7)
    cropped = model.field.alpha_mask.clone()
    model.update_alpha_mask()  # the cropped mask is the one the new grid gives
    assert torch.equal(model.field.alpha_mask, cropped)
    assert tuple(model.estimator.aabb.tolist()) == tuple(model.field.aabb.tolist())
    after = density_at(model, points)
    # the same field inside the new box, value for value; nothing with density left outside
    kept = (model.field.normalize(points).abs() <= 1.0).all(-1)
    assert int(kept.sum()) > 100 and int((~kept).sum()) > 100
    # up to float32 rounding of the new box's coordinate map (~1e-7 of the box) times the
    # density's slope (up to its peak per cell, ~10 cells across)
    scale = float(before.max())
    torch.testing.assert_close(after[kept], before[kept], atol=1e-5 * scale, rtol=0)
    assert float(before[~kept].abs().max()) == 0.0


def test_appearance_is_unchanged_inside_the_new_box():
    model = blob_model()
    model.update_alpha_mask()
    points = world_points(5000)
    with torch.no_grad():
        before = model.field.appearance(model.field.normalize(points))
        model.shrink()
        coords = model.field.normalize(points)
        kept = (coords.abs() <= 1.0).all(-1)
        after = model.field.appearance(coords[kept])
    torch.testing.assert_close(after, before[kept], atol=1e-5, rtol=1e-4)


def test_no_shrink_without_room_or_outside_box_scenes():
    empty = blob_model()
    with torch.no_grad():
        empty.field.density_planes[0].zero_()
    empty.update_alpha_mask()
    assert empty.shrink() is False  # nothing occupied: the box stays
    full = blob_model()
    with torch.no_grad():
        full.field.density_planes[0].fill_(0.5)
        full.field.density_lines[0].fill_(1.0)
    full.update_alpha_mask()
    box = full.field.aabb.clone()
    assert full.shrink() is False and torch.equal(full.field.aabb, box)
    # NDC and contracted grids, and shrink=false, never shrink in the schedule
    for model in (
        build_model(tiny_config()),
        build_model(tiny_config("model.tensorf.contraction=l2", ndc=False), scene_box=BOX),
        blob_model("model.tensorf.shrink=false"),
    ):
        assert model.shrinks() is False
        box = model.field.aabb.clone()
        model.before_step(10)
        model.before_step(15)  # the alpha-mask step
        assert torch.equal(model.field.aabb, box)


def test_the_schedule_shrinks_at_the_first_mask_step_then_spreads_the_grid():
    model = blob_model(
        "model.tensorf.upsample_steps=[20,30]", "model.tensorf.alpha_mask_steps=[15,25]"
    )
    box = model.field.aabb.clone()
    assert model.before_step(15) is True  # mask + shrink: the parameters were replaced
    resolution = model.field.resolution
    assert bool((model.field.aabb[1] - model.field.aabb[0] < box[1] - box[0]).any())
    assert model.before_step(17) is False  # not a schedule step
    assert model.before_step(20) is True
    schedule = grid_schedule((11, 9, 7), (23, 19, 13), 2)
    resolution = model.field.resolution
    cells = [n - 1 for n in resolution]
    planned = math.prod(n - 1 for n in schedule[1])
    assert abs(math.prod(cells) / planned - 1.0) < 0.25  # the same voxel count, rounded
    # voxels keep the schedule's proportions in the full box: the same size ratios
    size = (model.field.aabb[1] - model.field.aabb[0]).tolist()
    full = (box[1] - box[0]).tolist()
    voxel = [s / c for s, c in zip(size, cells)]
    planned_voxel = [s / (n - 1) for s, n in zip(full, schedule[1])]
    ratios = [v / p for v, p in zip(voxel, planned_voxel)]
    assert max(ratios) / min(ratios) < 1.3
    assert max(ratios) < 1.0  # finer than the schedule's in every axis
    # a later mask step shrinks again only to what the mask keeps, the field unchanged
    points = world_points(5000)
    before = density_at(model, points)
    model.before_step(25)
    inside = (model.field.normalize(points).abs() <= 1.0).all(-1)
    after = density_at(model, points)
    scale = float(before.max())
    torch.testing.assert_close(after[inside], before[inside], atol=1e-5 * scale, rtol=0)
    assert float(before[~inside].abs().max()) == 0.0


@pytest.mark.parametrize("steps", [(15,), (15, 20)])
def test_a_shrunk_checkpoint_loads_and_resumes_the_same_schedule(steps):
    model = blob_model()
    for step in steps:
        model.before_step(step)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = build_model(
        tiny_config("model.tensorf.density_activation=relu", ndc=False), scene_box=BOX
    )
    fresh.adapt_to_state_dict(state)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.field.aabb, model.field.aabb)
    assert fresh.field.resolution == model.field.resolution
    assert fresh.upsample_target(2) == model.upsample_target(2)
    a, b = renders_from_above(6.0, 6, 12.0, model, fresh)
    assert torch.equal(a.rgb, b.rgb)
    assert float(a.opacity.max()) > 0.01  # the rays see the blob
