"""The unbounded model end to end: a tiny walk-around capture trains with the contracted
TensoRF chosen without flags, saves, evaluates and renders an orbit with its depth video."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.data.rays import camera_rays
from nerfcli.render.contraction import contraction_norm
from nerfcli.training.checkpoint import load_checkpoint, restore_model
from tests.conftest import settings_args
from tests.unit.test_transforms import write_transforms

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_UNBOUNDED = settings_args(
    {
        "model.tensorf.grid_init": "[9,9,9]",
        "model.tensorf.grid_final": "[13,13,13]",
        "model.tensorf.upsample_steps": "[2]",
        "model.tensorf.alpha_mask_steps": "[3]",
        "model.tensorf.density_components": "[2,2,2]",
        "model.tensorf.appearance_components": "[2,2,2]",
        "model.tensorf.app_dim": 4,
        "model.tensorf.decoder_width": 8,
        "model.tensorf.max_samples": 16,
        "train.batch_rays": 64,
        "train.eval_every": 2,
        "train.log_every": 1,
    }
)


def run(*args: str):
    return CliRunner().invoke(app, [*args])


def test_unbounded_train_eval_render_depth_video(tmp_path):
    scene = write_transforms(tmp_path / "walk", n=9, size=(12, 16))
    out = tmp_path / "run"
    result = run("train", str(scene), "--factor", "1", *TINY_UNBOUNDED, "--iters", "5",
                 "--out", str(out), "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out / "ckpt.pt")
    assert ckpt.scene.kind == "unbounded" and ckpt.config.data.scene_type == "unbounded"
    tensorf = ckpt.config.model.tensorf
    assert tensorf.contraction == "l2"  # the unbounded profile, chosen without flags
    assert tensorf.grid_final == (13, 13, 13)  # --set still wins over the profile

    model = restore_model(ckpt)  # the contraction, box, grid and alpha mask come back
    assert model.cfg.contraction == "l2" and model.field.resolution == (13, 13, 13)
    assert model.field.alpha_mask.numel() > 0
    torch.testing.assert_close(model.field.aabb, torch.as_tensor(ckpt.scene.scene_box))
    rays = camera_rays(ckpt.scene.camera(0)).reshape(-1)
    with torch.no_grad():
        t = model.sample_depths(rays, ckpt.scene.near, ckpt.scene.far, train=False)
        coords = model.field.normalize(
            rays.origins[:, None] + t[..., None] * rays.directions[:, None]
        )
        a = model.render_rays(rays, ckpt.scene.near, ckpt.scene.far, train=False)
        b = restore_model(ckpt).render_rays(rays, ckpt.scene.near, ckpt.scene.far, train=False)
    last = contraction_norm(coords[:, -1], "l2")  # the last sample: far out in the shell
    assert float(coords.abs().max()) <= 1.0 and float(last.min()) > 0.75
    torch.testing.assert_close(a.rgb, b.rgb)

    result = run("eval", str(out / "ckpt.pt"), "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [v["view"] for v in report["views"]] == [0, 8]
    assert all(np.isfinite(v["psnr"]) for v in report["views"])

    video = tmp_path / "orbit.gif"
    result = run("render-video", str(out / "ckpt.pt"), "--frames", "3", "--depth",
                 "--out", str(video), "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["path"] == "orbit" and info["frames"] == 3
    depth = iio.imread(info["depth_video"], index=None)
    assert depth.shape[1:3] == (12, 16)  # (GIF merges identical frames)
    assert np.isfinite(depth).all() and depth.std() > 0  # not one flat colour
