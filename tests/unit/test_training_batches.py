"""Training batches: the packed ray table and where it lives, the same global batch on every
rank, the per-block jitter seeds, and the random background (issue 10) on an RGBA scene."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.config import DataConfig
from nerfcli.data.formats import load_scene
from nerfcli.metrics import to8b
from nerfcli.models.config import build_config
from nerfcli.training.batches import (
    RaySource,
    block_seed,
    pack_training_rays,
    rays_home,
    table_bytes,
)
from nerfcli.training.distributed import Ranks
from nerfcli.training.session import start_run
from tests.conftest import tiny_nerf_args, write_llff

CPU = torch.device("cpu")
runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def write_rgba_blender(root: Path, size: int = 8, counts=(3, 1, 2)) -> Path:
    """A tiny NeRF-synthetic scene: RGBA noise PNGs whose alpha has 0, 1 and partial values."""
    rng = np.random.default_rng(3)
    for split, count in zip(("train", "val", "test"), counts):
        frames = []
        (root / split).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            pixels = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
            pixels[0, :, 3] = 0
            pixels[1, :, 3] = 255
            iio.imwrite(root / split / f"r_{k}.png", pixels)
            theta = 2 * math.pi * (k + 3 * len(split)) / 7
            position = np.array([4 * math.cos(theta), 4 * math.sin(theta), 1.0])
            back = position / np.linalg.norm(position)
            right = np.cross([0.0, 0.0, 1.0], back)
            right /= np.linalg.norm(right)
            c2w = np.eye(4)
            c2w[:3, :4] = np.stack([right, np.cross(back, right), back, position], 1)
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": c2w.tolist()})
        text = json.dumps({"camera_angle_x": 0.7, "frames": frames})
        (root / f"transforms_{split}.json").write_text(text)
    return root


@pytest.fixture
def rgba_scene(tmp_path: Path):
    root = write_rgba_blender(tmp_path / "rgba")
    data = DataConfig(format="blender", factor=1, background="random", ndc=False)
    data = replace(data, blender={"testskip": 1})
    return load_scene(root, data)


def test_the_table_packs_rays_colours_and_alpha(rgba_scene):
    table = pack_training_rays(rgba_scene)
    assert table.shape == (3 * 8 * 8, 13) and table_bytes(rgba_scene) == table.numel() * 4
    assert torch.equal(table[:, 9:12], torch.from_numpy(rgba_scene.images[:3].reshape(-1, 3)))
    assert torch.equal(table[:, 12], torch.from_numpy(rgba_scene.alpha[:3].reshape(-1)))
    assert set(np.unique(rgba_scene.alpha[:, 0])) == {0.0}  # row 0 transparent


def test_fern_stays_on_the_gpu_and_full_size_lego_goes_to_host_memory(rgba_scene):
    from dataclasses import replace

    gpu = torch.device("cuda")  # a device object only: nothing is allocated
    fern = replace(rgba_scene, splits={"train": list(range(17))}, height=378, width=504)
    lego = replace(rgba_scene, splits={"train": list(range(100))}, height=800, width=800)
    budget = build_config(None).train.device_rays_gb
    assert rays_home(fern, gpu, budget) == gpu  # 0.17 GB
    assert rays_home(lego, gpu, budget) == CPU  # 3.3 GB with the alpha column
    assert rays_home(lego, CPU, budget) == CPU


def test_random_background_target_is_rgb_plus_uncovered_colour(rgba_scene):
    generator = torch.Generator().manual_seed(5)
    source = RaySource(rgba_scene, CPU, CPU, generator)
    replay = torch.Generator().set_state(generator.get_state())
    batch = source.draw(100, slice(0, 100))
    index = torch.randint(0, source.num_rays, (100,), generator=replay)
    colour = torch.rand((100, 3), generator=replay)
    assert torch.equal(batch.colour, colour)
    rgb, alpha = source.table[index, 9:12], source.table[index, 12:13]
    torch.testing.assert_close(batch.target, rgb + (1 - alpha) * colour)
    opaque = alpha[:, 0] == 1
    assert opaque.any() and (~opaque).any()
    assert torch.equal(batch.target[opaque], rgb[opaque])


@pytest.mark.parametrize("world", [2, 3])
def test_every_rank_takes_its_rows_of_the_same_global_batch(rgba_scene, world):
    whole = RaySource(rgba_scene, CPU, CPU, torch.Generator().manual_seed(1)).draw(50, slice(0, 50))
    parts = []
    for rank in range(world):
        rows = Ranks(rank=rank, world=world).rows(50)
        source = RaySource(rgba_scene, CPU, CPU, torch.Generator().manual_seed(1))
        parts.append(source.draw(50, rows))
    assert sum(len(p.target) for p in parts) == 50
    for name in ("origins", "directions", "viewdirs"):
        joined = torch.cat([getattr(p.rays, name) for p in parts])
        assert torch.equal(joined, getattr(whole.rays, name))
    assert torch.equal(torch.cat([p.target for p in parts]), whole.target)
    assert torch.equal(torch.cat([p.colour for p in parts]), whole.colour)


def test_rows_and_shards_cover_everything_once():
    for world in range(1, 6):
        for total in (world, 7, 256, 1001):
            rows = [Ranks(rank=r, world=world).rows(total) for r in range(world)]
            assert [r.start for r in rows] == [0, *[r.stop for r in rows[:-1]]]
            assert rows[-1].stop == total and all(r.stop - r.start >= 1 for r in rows)
        items = list(range(11))
        shards = [Ranks(rank=r, world=world).shard(items) for r in range(world)]
        assert sorted(sum(shards, [])) == items


def test_block_seeds_are_fixed_and_distinct():
    seeds = {block_seed(0, step, block) for step in range(50) for block in range(50)}
    assert len(seeds) == 2500 and all(0 <= s < 2**63 for s in seeds)
    assert block_seed(3, 4, 5) == block_seed(3, 4, 5) != block_seed(4, 4, 5)


def _tiny_cfg(*extra: str):
    return build_config(
        None,
        [
            "model.name=nerf",
            "model.nerf.netwidth=16",
            "model.nerf.netwidth_fine=16",
            "model.nerf.netdepth=2",
            "model.nerf.netdepth_fine=2",
            "model.nerf.skips=[0]",
            "render.n_samples=8",
            "render.n_importance=8",
            "data.format=blender",
            "data.factor=1",
            "data.ndc=false",
            "data.background=random",
            "train.batch_rays=40",
            "train.eval_every=0",
            *extra,
        ],
    )


def test_the_prediction_is_composited_on_the_same_colour_before_the_loss(rgba_scene, tmp_path):
    """Both passes of the classic model (fine and coarse) get rgb + (1 - opacity) * colour."""
    cfg = _tiny_cfg()
    trainer = start_run(cfg, rgba_scene, tmp_path / "run", CPU).trainer
    batch = trainer.source.draw(40, slice(0, 40))
    with torch.no_grad():
        trainer.render_generator.manual_seed(block_seed(cfg.train.seed, 0, 0))
        raw = trainer.model.render_rays(
            batch.rays, rgba_scene.near, rgba_scene.far, True, trainer.render_generator
        )
    seen = {}
    loss = trainer.model.loss

    def spy(result, target, decay):
        seen.update(result=result, target=target)
        return loss(result, target, decay)

    trainer.model.loss = spy
    trainer._forward_backward(batch.rays, batch.target, False, 1.0, batch.colour)
    result, colour = seen["result"], batch.colour
    uncovered = 1 - raw.opacity[:, None]
    torch.testing.assert_close(result.rgb, raw.rgb + uncovered * colour)
    coarse = raw.extras["rgb_coarse"] + (1 - raw.extras["opacity_coarse"][:, None]) * colour
    torch.testing.assert_close(result.extras["rgb_coarse"], coarse)
    assert torch.equal(seen["target"], batch.target)
    assert (uncovered > 1e-3).any()  # the composite changed something


def test_random_background_trains_and_evaluates_on_black(tmp_path):
    root = write_rgba_blender(tmp_path / "rgba")
    out = tmp_path / "run"
    args = tiny_nerf_args(batch_rays=64, eval_every=3, eval_downscale=1, ckpt_every=0)
    result = runner.invoke(
        app,
        ["train", str(root), *args, "--set", "data.background=random", "--iters", "3"]
        + ["--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 3
    result = runner.invoke(app, ["eval", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    data = DataConfig(format="blender", factor=1, background="random", ndc=False)
    data = replace(data, blender={"testskip": 1})
    black = load_scene(root, data).images  # composited on black
    for score in report["views"]:
        assert np.array_equal(iio.imread(score["files"]["gt"]), to8b(black[score["view"]]))
    preview = iio.imread(sorted((out / "previews").glob("*.png"))[-1])
    assert np.array_equal(preview[:, 8:], to8b(black[report["views"][0]["view"]]))


def test_batch_smaller_than_the_processes_is_refused(tmp_path):
    from nerfcli.errors import ConfigError
    from nerfcli.training.trainer import Trainer

    scene = load_scene(write_llff(tmp_path / "s", n=3, height=6, width=8), DataConfig(factor=1))
    cfg = build_config(None, ["model.name=nerf", "train.batch_rays=1", "data.factor=1"])
    with pytest.raises(ConfigError, match="smaller than the 2 processes"):
        Trainer(cfg, scene, tmp_path / "run", ranks=Ranks(rank=0, world=2))
