"""`nerf make-scene`: JSON output, refusal to overwrite, and a scene inspect-poses accepts."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.data.formats.llff import load_llff_data

runner = CliRunner()
TINY = ["--views", "9", "--height", "24", "--width", "32"]


def test_json_describes_the_written_scene(tmp_path):
    out = tmp_path / "synthetic"
    result = runner.invoke(app, ["make-scene", str(out), "--seed", "3", "--json", *TINY])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert doc["path"] == str(out)
    assert (doc["preset"], doc["seed"], doc["num_views"]) == ("small", 3, 9)
    assert (doc["height"], doc["width"], doc["focal"]) == (24, 32, 28.0)
    assert doc["test_views"] == [0, 8]
    assert 0 < doc["near"] < doc["depth_min"] < doc["depth_max"] < doc["far"]
    assert doc["seconds"] >= 0
    scene = load_llff_data(out, factor=1)
    assert scene.images.shape == (9, 24, 32, 3)
    assert scene.i_test == doc["test_views"]
    pb = np.load(out / "poses_bounds.npy")
    assert pb.shape == (9, 17)
    assert pb[:, 15].min() == np.float64(doc["near"])


def test_refuses_existing_scene_without_force(tmp_path):
    out = tmp_path / "scene"
    assert runner.invoke(app, ["make-scene", str(out), *TINY]).exit_code == 0
    before = (out / "poses_bounds.npy").read_bytes()
    again = runner.invoke(app, ["make-scene", str(out), "--seed", "1", *TINY])
    assert again.exit_code == 1
    assert "--force" in again.stderr and "Traceback" not in again.output
    assert (out / "poses_bounds.npy").read_bytes() == before
    forced = runner.invoke(app, ["make-scene", str(out), "--seed", "1", "--force", *TINY])
    assert forced.exit_code == 0, forced.output
    assert (out / "poses_bounds.npy").read_bytes() != before


def test_bad_preset_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["make-scene", str(tmp_path / "x"), "--preset", "huge"])
    assert result.exit_code == 2
    assert not (tmp_path / "x").exists()


def test_inspect_poses_accepts_the_generated_scene(tmp_path):
    out = tmp_path / "scene"
    assert runner.invoke(app, ["make-scene", str(out), "--quiet"]).exit_code == 0
    result = runner.invoke(app, ["inspect-poses", str(out), "--factor", "1", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["capture"] == "forward-facing"
    failed = [check["name"] for check in doc["checks"] if not check["ok"]]
    assert failed == []
    assert doc["num_views"] == 16 and (doc["height"], doc["width"]) == (48, 64)
