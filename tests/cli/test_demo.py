"""`nerf demo`: the whole loop (generate, train through the one session path, eval, video)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_demo_runs_the_whole_loop_and_replaces_only_a_demo(tmp_path):
    out = tmp_path / "demo"
    runner = CliRunner()
    args = ["demo", "--out", str(out), "--iters", "5", "--frames", "2", "--json", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["steps"] == 5 and doc["model"] == "tensorf"
    assert 5.0 < doc["psnr"] < 60.0 and 0.0 < doc["ssim"] <= 1.0
    assert doc["depth_abs_rel"] is not None  # the generated scene has ground-truth depth
    for name in ("run/ckpt.pt", "run/config.yaml", "video.mp4", "metrics.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["psnr"] == doc["psnr"]
    config = (out / "run" / "config.yaml").read_text()
    assert "bd_factor: 0.75" in config and "background: black" in config  # the settled config
    again = runner.invoke(app, args)  # a previous demo is replaced
    assert again.exit_code == 0, again.output
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    refused = runner.invoke(app, ["demo", "--out", str(other), "--iters", "1", "-q"])
    assert refused.exit_code == 1 and "not a previous demo" in refused.output
    assert (other / "keep.txt").read_text() == "x"
