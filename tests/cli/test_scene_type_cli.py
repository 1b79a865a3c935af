"""`nerf train` without flags on a surround capture: the printed choice, the JSON summary, the
run's config, and eval / render-video reloading the same walk-around frame from the checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.evaluation.evaluate import load_matching_scene
from nerfcli.training.checkpoint import load_checkpoint
from tests.conftest import tiny_nerf_args, write_llff
from tests.scene_types import write_colmap_surround, write_surround_llff

runner = CliRunner()
# the tiny classic NeRF, without its --factor 1 (these tests watch the auto factor)
TINY = tiny_nerf_args(batch_rays=64, eval_every=0, ckpt_every=5, log_every=5)
assert TINY[2:4] == ["--factor", "1"]
TINY = TINY[:2] + TINY[4:]


def train(scene: Path, out: Path, *extra: str):
    args = ["train", str(scene), *TINY, "--iters", "5", "--out", str(out), "--json", *extra]
    return runner.invoke(app, args)


def test_surround_capture_trains_unbounded_and_reloads_the_same_frame(tmp_path: Path):
    scene = write_surround_llff(tmp_path / "around")
    result = train(scene, tmp_path / "run")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())
    assert "scene type: unbounded (surround capture: views spread 72 deg > 45)" in text
    assert "factor 1: photos 32 x 24" in text and "unbounded" in text
    summary = json.loads(result.stdout)
    assert summary["scene_type"] == "unbounded" and summary["factor"] == 1
    assert summary["choices"]["scene_type"]["value"] == "unbounded"
    assert summary["choices"]["scene_type"]["auto"] is True
    data = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]
    assert (data["scene_type"], data["factor"], data["ndc"]) == ("unbounded", 1, False)

    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert ckpt.scene.kind == "unbounded" and ckpt.scene.render_path == "orbit"
    again = load_matching_scene(ckpt, None)
    np.testing.assert_array_equal(again.c2w, ckpt.scene.c2w)
    np.testing.assert_array_equal(again.world_from_file, ckpt.scene.world_from_file)
    assert again.near == ckpt.scene.near and again.far == ckpt.scene.far
    result = runner.invoke(app, ["eval", str(tmp_path / "run" / "ckpt.pt"), "--json"])
    assert result.exit_code == 0, result.output

    # the default video path of a surround capture is the orbit; --orbit asks for it too
    for flags in ([], ["--orbit"]):
        out = tmp_path / f"video{len(flags)}.gif"
        args = ["render-video", str(tmp_path / "run"), "--frames", "3", "--out", str(out)]
        result = runner.invoke(app, [*args, *flags, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["path"] == "orbit" and out.is_file()


def test_scene_type_flag_overrides_the_choice(tmp_path: Path):
    facing = write_llff(tmp_path / "facing", n=9)
    result = train(facing, tmp_path / "auto")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scene_type"] == "forward"
    assert "scene type: forward (forward-facing" in " ".join(result.stderr.split())
    result = train(facing, tmp_path / "forced", "--scene-type", "unbounded")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["scene_type"] == "unbounded"
    assert summary["choices"]["scene_type"]["auto"] is False
    assert load_checkpoint(tmp_path / "forced" / "ckpt.pt").scene.kind == "unbounded"
    result = train(facing, tmp_path / "bad", "--scene-type", "sideways")
    # a bad option value is a usage error naming the flag, not the internal key (issue 19)
    assert result.exit_code == 2 and "--scene-type" in result.output
    assert "data.scene_type" not in result.output and not (tmp_path / "bad").exists()


def test_per_view_cameras_are_said_and_llff_camera_is_recorded(tmp_path: Path):
    names = ["3.jpg", "10.jpg", "1.jpg", "2.jpg", "20.jpg", "7.jpg", "8.jpg", "9.jpg", "4.jpg"]
    scene = write_colmap_surround(tmp_path / "cap", names, [30.0 + k for k in range(9)])
    result = train(scene, tmp_path / "colmap")
    assert result.exit_code == 0, result.output
    assert "matched by image name" in " ".join(result.stderr.split())
    ckpt = load_checkpoint(tmp_path / "colmap" / "ckpt.pt")
    assert len(set(ckpt.scene.K[:, 0, 0].tolist())) == 9
    result = train(scene, tmp_path / "single", "--llff-camera")
    assert result.exit_code == 0, result.output
    single = load_checkpoint(tmp_path / "single" / "ckpt.pt")
    assert (
        single.config.data.llff["llff_camera"] and len(set(single.scene.K[:, 0, 0].tolist())) == 1
    )
    # eval of the single-camera run reloads the single camera although sparse/0 is there
    assert runner.invoke(app, ["eval", str(tmp_path / "single"), "--json"]).exit_code == 0
    # the model removed after training: eval refuses instead of scoring other cameras
    shutil.rmtree(scene / "sparse")
    result = runner.invoke(app, ["eval", str(tmp_path / "colmap" / "ckpt.pt")])
    assert result.exit_code == 1 and "intrinsics differ" in result.stderr


def test_real_captures_choose_as_documented(fern_dir: Path, cup_dir: Path):
    from nerfcli.models.resolve import ConfigRequest, resolve

    choices: dict = {}
    cfg = resolve(ConfigRequest(fern_dir), choices)[0]
    assert (cfg.data.scene_type, cfg.data.ndc, cfg.data.factor) == ("forward", True, 8)
    cfg = resolve(ConfigRequest(cup_dir), choices)[0]
    assert (cfg.data.scene_type, cfg.data.factor) == ("unbounded", 1)
    assert "views spread 74 deg > 45" in choices["scene_type"].reason
    assert "photos 800 x 600" in choices["factor"].reason


RESUME_REFUSED = {
    "--scene-type": ["--scene-type", "forward"],
    "--llff-camera": ["--llff-camera"],
    "--full-res": ["--full-res"],  # a flag given off is given too
    "--seed": ["--seed", "3"],
    "--set": ["--set", "train.lr=1e-3"],
}


@pytest.mark.parametrize("flag", list(RESUME_REFUSED))
def test_resume_refuses_scene_flags(tmp_path: Path, flag: str):
    """--resume refuses every option of train but those it may change, read from the command
    (an option added to train is refused without anyone listing it)."""
    facing = write_llff(tmp_path / "facing", n=9)
    assert train(facing, tmp_path / "run").exit_code == 0
    args = ["train", str(facing), "--out", str(tmp_path / "run"), "--resume"]
    result = runner.invoke(app, [*args, *RESUME_REFUSED[flag]])
    assert result.exit_code == 1 and f"drop {flag} " in result.stderr
