"""Issue 19's hostile battery: what a user types wrong, across every command and option, as
siblings of the items in the issue. Each case is one clean line (or click's usage box naming
the flag, exit 2), never a traceback, and nothing left on disk; paths with [ ] print as typed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from tests.conftest import tiny_nerf_args, write_llff

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    import torch

    base = tmp_path_factory.mktemp("hostile")
    scene = write_llff(base / "scene", n=9)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = ["train", str(scene), *tiny_nerf_args(batch_rays=64, eval_every=0)]
        result = runner.invoke(app, [*args, "--iters", "2", "--out", str(base / "run"), "-q"])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    return base / "run"


def clean(result) -> str:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return " ".join(result.output.split())


@pytest.mark.parametrize(
    "args, flag",
    [
        (["render-video", "{run}", "--frames", "0"], "--frames"),
        (["render-video", "{run}", "--fps", "0"], "--fps"),
        (["render-video", "{run}", "--downscale", "0"], "--downscale"),
        (["render-video", "{run}", "--out", "{tmp}/video.avi"], "--out"),
        (["eval", "{run}", "--downscale", "0"], "--downscale"),
        (["eval", "{run}", "--testskip", "-1"], "--testskip"),
        (["train", "{run}", "--nproc", "0"], "--nproc"),
        (["train", "{run}", "--factor", "0"], "--factor"),
        (["train", "{run}", "--iters", "-3"], "--iters"),
        (["train", "{run}", "--max-minutes", "abc"], "--max-minutes"),
        (["rays", "{run}", "--view", "0", "--pixel", "1;2"], "--pixel"),
        (["rays", "{run}", "--view", "0", "--out", "{tmp}/r.txt"], "--out"),
        (["inspect-poses", "{run}", "--plot", "{tmp}/p.jpg"], "--plot"),
        (["inspect-poses", "{run}", "--frames", "0"], "--frames"),
        (["demo", "--frames", "0", "--out", "{tmp}/demo"], "--frames"),
        (["demo", "--device", "quantum", "--out", "{tmp}/demo"], "--device"),
    ],
)
def test_usage_errors_name_the_flag(run_dir, tmp_path, args, flag):
    args = [a.format(run=run_dir, tmp=tmp_path) for a in args]
    result = runner.invoke(app, args)
    text = clean(result)
    assert result.exit_code == 2, text
    assert flag in text
    assert not (tmp_path / "demo").exists() and not (tmp_path / "video.avi").exists()


@pytest.mark.parametrize(
    "setting",
    [
        "train.lr=-1",
        "train.lr=0",
        "render.chunk=0",
        "train.batch_rays=0",
        "train.batch_rays=-5",
        "train.max_minutes=.inf",
        "train.max_minutes=-1",
        "train.lr_decay_rate=.inf",
        "model.tensorf.tv_weight_density=-1",
        "model.tensorf.init_scale=0",
        "model.tensorf.decoder_width=0",
        "model.tensorf.colour_samples=-2",
        "model.nerf.netwidth=-256",
        "data.llff.bd_factor=.nan",
    ],
)
def test_set_values_are_refused_before_a_folder_is_made(tmp_path, setting):
    scene = write_llff(tmp_path / "scene")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(scene), "--set", setting, "--out", str(out)])
    text = clean(result)
    assert result.exit_code == 1, text
    assert setting.split("=")[0] in text
    assert not out.exists()


def test_bracket_paths_in_every_written_line(run_dir, tmp_path):
    scene = write_llff(tmp_path / "scene[1]")
    rays_out = tmp_path / "rays[a].npz"
    result = runner.invoke(app, ["rays", str(scene), "--view", "0", "--out", str(rays_out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {rays_out}" in clean(result)
    plot, path_out = tmp_path / "cams[b].png", tmp_path / "path[c].npy"
    result = runner.invoke(
        app, ["inspect-poses", str(scene), "--plot", str(plot), "--path-out", str(path_out)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {plot}" in clean(result) and f"wrote {path_out}" in clean(result)
    video = tmp_path / "v[red].mp4"
    result = runner.invoke(
        app,
        ["render-video", str(run_dir), "--frames", "2", "--downscale", "4", "--out", str(video)],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {video}" in clean(result)
    evaluated = tmp_path / "ev[bold]"
    result = runner.invoke(app, ["eval", str(run_dir), "--out", str(evaluated)])
    assert result.exit_code == 0, result.output
    assert f"metrics.json in {evaluated}" in clean(result)


def test_bad_files_named_in_one_line(run_dir, tmp_path):
    cases = []
    missing = tmp_path / "nothing.npy"
    cases.append((["render-video", str(run_dir), "--path", str(missing)], str(missing)))
    archive = tmp_path / "poses.npz"
    np.savez(archive, poses=np.zeros((2, 3, 4)))
    cases.append((["render-video", str(run_dir), "--path", str(archive)], "an .npz archive"))
    flat = tmp_path / "flat.npy"
    np.save(flat, np.eye(4)[:3])  # one matrix, not [F, 3, 4]
    cases.append((["render-video", str(run_dir), "--path", str(flat)], "expected camera-to-world"))
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    cases.append((["eval", str(empty_dir)], "no ckpt.pt"))
    cases.append((["render-video", str(empty_dir)], "no ckpt.pt"))
    cases.append((["train", str(tmp_path / "no-scene"), "--out", str(tmp_path / "r")], "no-scene"))
    for args, needle in cases:
        result = runner.invoke(app, args)
        text = clean(result)
        assert result.exit_code == 1, (args, text)
        assert needle in text, (args, text)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "r").exists()


def test_render_video_refuses_to_overwrite_and_json_is_one_document(run_dir, tmp_path):
    out = tmp_path / "v.mp4"
    args = ["render-video", str(run_dir), "--frames", "2", "--downscale", "4", "--out", str(out)]
    first = runner.invoke(app, [*args, "--json", "--quiet"])
    assert first.exit_code == 0, first.output
    json.loads(first.stdout)
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--force" in clean(again)
