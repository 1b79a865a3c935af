"""Training batches from the rays a TensoRF model can learn from (TensoRF's filtering_rays):
the rays it leaves out get exactly no gradient through the training render, it starts at the
second alpha-mask update of a box scene, it follows the mask, batches come from the kept rows
only, and a training run records how many rays it kept."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from nerfcli.config import DataConfig
from nerfcli.data.formats import load_scene
from nerfcli.data.rays import Rays
from nerfcli.models.config import build_config
from nerfcli.models.registry import build_model
from nerfcli.training.session import start_run
from tests.unit.test_tensorf import make_model
from tests.unit.test_tensorf_shrink import BOX, blob_model
from tests.unit.test_training_batches import write_rgba_blender

CPU = torch.device("cpu")
MASKS = "model.tensorf.alpha_mask_steps=[3,5]"


def rays_through_box(count: int, seed: int = 0) -> Rays:
    """Rays from a sphere of radius 6 around BOX towards random points of it."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.from_numpy(BOX.mean(0))
    start = centre + torch.nn.functional.normalize(torch.randn(count, 3, generator=g), dim=-1) * 6
    lo, hi = torch.from_numpy(BOX[0]), torch.from_numpy(BOX[1])
    aim = lo + (hi - lo) * torch.rand(count, 3, generator=g)
    directions = aim - start
    return Rays(start, directions, torch.nn.functional.normalize(directions, dim=-1))


def masked_blob(*overrides: str):
    """blob_model after its two alpha-mask updates (the filter's start)."""
    model = blob_model(MASKS, *overrides)
    model.before_step(3)
    model.before_step(5)
    return model


def test_rays_left_out_get_no_gradient_and_kept_ones_do():
    model = masked_blob("model.tensorf.shrink=false")
    rays = rays_through_box(400)
    keep = model.useful_rays(rays, 0.0, 20.0)
    assert 20 < int(keep.sum()) < 380  # the blob is small: both kinds are here
    generator = torch.Generator().manual_seed(1)
    for subset, expect_gradient in ((~keep, False), (keep, True)):
        model.zero_grad(set_to_none=True)
        index = torch.nonzero(subset).squeeze(1)
        out = model.render_rays(rays[index], 0.0, 20.0, train=True, generator=generator)
        (out.rgb.sum() + out.opacity.sum()).backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        largest = max((float(g.abs().max()) for g in grads), default=0.0)
        assert (largest > 0) == expect_gradient
        if not expect_gradient:
            assert float(out.opacity.detach().max()) == 0.0


def test_the_key_starts_at_the_second_mask_update_and_follows_the_mask():
    model = blob_model(MASKS, "model.tensorf.upsample_steps=[7]")
    assert model.ray_filter_key() is None
    model.before_step(3)
    assert model.ray_filter_key() is None  # TensoRF filters from its second update
    model.before_step(4)
    assert model.ray_filter_key() is None
    model.before_step(5)
    first = model.ray_filter_key()
    assert first is not None
    model.before_step(6)
    assert model.ray_filter_key() == first  # nothing changed
    model.before_step(7)  # an upsampling recomputes the mask
    assert model.ray_filter_key() not in (None, first)
    off = blob_model(MASKS, "model.tensorf.filter_rays=false")
    off.before_step(3)
    off.before_step(5)
    assert off.ray_filter_key() is None


def test_ndc_and_contracted_scenes_are_not_filtered():
    ndc = make_model(MASKS)
    torch.manual_seed(0)
    cfg = build_config(
        overrides=[MASKS, "model.tensorf.contraction=l2", "model.tensorf.grid_init=[9,9,9]"]
        + ["model.tensorf.grid_final=[9,9,9]", "data.ndc=false", "data.llff.spherify=true"]
    )
    contracted = build_model(cfg, scene_box=BOX)
    for model in (ndc, contracted):
        model.before_step(3)
        model.before_step(5)
        assert model.field.alpha_mask.numel()  # masked, but not filtered
        assert model.ray_filter_key() is None


def test_batches_come_from_the_kept_rows_only(tmp_path):
    root = write_rgba_blender(tmp_path / "rgba", size=16)
    data = replace(DataConfig(format="blender", factor=1, ndc=False), blender={"testskip": 1})
    scene = load_scene(root, data)
    cfg = build_config(overrides=["model.name=tensorf", "data.format=blender", "data.ndc=false"])
    source = start_run(cfg, scene, tmp_path / "run", CPU).trainer.source
    keep = torch.zeros(source.num_rays, dtype=torch.bool)
    keep[torch.arange(5, source.num_rays, 7)] = True
    source.keep(keep)
    assert source.num_drawn == int(keep.sum())
    batch = source.draw(500, slice(0, 500))
    rows = source.table[keep]
    # every drawn ray is a kept row (rows are distinct: rays of different pixels or views)
    drawn = torch.cat([batch.rays.origins, batch.rays.directions], 1)
    table = rows[:, 0:6]
    assert bool((drawn[:, None, :] == table[None]).all(-1).any(1).all())
    source.keep(torch.zeros_like(keep))  # a mask keeping nothing: every row again
    assert source.num_drawn == source.num_rays


def test_a_training_run_records_the_rays_it_kept(tmp_path):
    root = write_rgba_blender(tmp_path / "rgba", size=24, counts=(4, 1, 1))
    data = replace(DataConfig(format="blender", factor=1, ndc=False), blender={"testskip": 1})
    scene = load_scene(root, data)
    cfg = build_config(
        overrides=[
            "model.name=tensorf",
            "data.format=blender",
            "data.ndc=false",
            "model.tensorf.grid_init=[12,12,12]",
            "model.tensorf.grid_final=[12,12,12]",
            "model.tensorf.upsample_steps=[]",
            "model.tensorf.alpha_mask_steps=[2,4]",
            "model.tensorf.shrink=false",
            "model.tensorf.density_components=[2,2,2]",
            "model.tensorf.appearance_components=[2,2,2]",
            "model.tensorf.app_dim=4",
            "model.tensorf.decoder_width=8",
            "train.batch_rays=64",
            "train.iters=6",
            "train.max_minutes=0",
            "train.eval_every=0",
        ]
    )
    run = start_run(cfg, scene, tmp_path / "run", CPU)
    # a known mask: one cell of the 11^3 at the box's corner, which few rays meet
    model = run.trainer.model
    original = model.field.update_alpha_mask

    def corner_mask():
        original()
        model.field.alpha_mask.zero_()
        model.field.alpha_mask[0, 0, 0] = True

    model.field.update_alpha_mask = corner_mask
    run.trainer.run()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    kept = [r for r in records if "rays_kept" in r]
    assert len(kept) == 1 and kept[0]["step"] == 4
    assert kept[0]["rays"] == 4 * 24 * 24
    assert 0 < kept[0]["rays_kept"] < kept[0]["rays"]
    assert run.trainer.source.num_drawn == kept[0]["rays_kept"]
    assert not math.isnan(records[-1].get("loss", 0.0))


@pytest.mark.parametrize("count", [0, 7])
def test_useful_rays_of_no_mask_cells_is_all_false(count):
    model = masked_blob("model.tensorf.shrink=false")
    model.field.alpha_mask.zero_()
    keep = model.useful_rays(rays_through_box(count), 0.0, 20.0)
    assert keep.shape == (count,) and not bool(keep.any())
