"""`nerf inspect-poses` runs the pose checks (nerfcli.data.pose_checks) on any capture: the real
captures pass, and the same captures with a run of cameras flipped to the far side (the
doppelganger mistake of SfM on symmetric scenes) fail the `sequence` check, naming them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from tests.conftest import SHARED_DATA

runner = CliRunner()


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real capture {name!r} not found at {path}")
    return path


def pose_rows(path: Path) -> tuple[int, dict[str, dict]]:
    result = runner.invoke(app, ["inspect-poses", str(path), "--json"])
    doc = json.loads(result.stdout)
    return result.exit_code, {check["name"]: check for check in doc["checks"]}


def half_turn_about(up: np.ndarray) -> np.ndarray:
    """[3, 3] rotation by 180 deg about the unit axis `up`: 2 u u^T - I."""
    up = up / np.linalg.norm(up)
    return 2.0 * np.outer(up, up) - np.eye(3)


def flip(rotations: np.ndarray, centres: np.ndarray, up: np.ndarray, views: list[int]):
    """Turn `views` by 180 deg about the vertical line through the cameras' centroid, in place:
    each then stands on the far side looking back."""
    turn, middle = half_turn_about(up), centres.mean(0)
    rotations[views] = turn @ rotations[views]
    centres[views] = (centres[views] - middle) @ turn.T + middle


@pytest.mark.parametrize("capture", ["cup", "fern", "lego", "fox"])
def test_the_real_captures_pass_the_pose_checks(capture):
    code, rows = pose_rows(shared(capture))
    assert code == 0
    assert rows["sequence"]["ok"] and rows["upright"]["ok"]
    ordered = {"cup": True, "fern": True, "fox": True, "lego": False}[capture]
    assert ("not checked" not in rows["sequence"]["message"]) == ordered


def test_a_flipped_llff_capture_fails_the_sequence_check(tmp_path):
    cup = shared("cup")
    scene = tmp_path / "cup"
    scene.mkdir()
    (scene / "images").symlink_to(cup / "images")
    array = np.load(cup / "poses_bounds.npy")
    poses = array[:, :15].reshape(-1, 3, 5).copy()  # [N, 3, 5] columns [down, right, back, t, hwf]
    names = sorted(p.name for p in (cup / "images").iterdir())  # the rows' order
    rows = [names.index(f"{k}.jpg") for k in (30, 31, 32)]
    up = -poses[:, :, 0].mean(0)  # minus the mean "down" column
    rotations, centres = poses[:, :, :3].copy(), poses[:, :, 3].copy()
    flip(rotations, centres, up, rows)
    poses[:, :, :3], poses[:, :, 3] = rotations, centres
    array[:, :15] = poses.reshape(-1, 15)
    np.save(scene / "poses_bounds.npy", array)
    code, checks = pose_rows(scene)
    assert code == 1 and checks["upright"]["ok"] and not checks["sequence"]["ok"]
    assert "30.jpg/31.jpg/32.jpg turned by" in checks["sequence"]["message"]


def test_a_flipped_transforms_json_fails_the_sequence_check(tmp_path):
    fox = shared("fox")
    scene = tmp_path / "fox"
    scene.mkdir()
    (scene / "images").symlink_to(fox / "images")
    doc = json.loads((fox / "transforms.json").read_text())
    matrices = np.array([frame["transform_matrix"] for frame in doc["frames"]])  # [N, 4, 4]
    order = sorted(range(len(matrices)), key=lambda k: doc["frames"][k]["file_path"])
    run = order[20:22]
    rotations, centres = matrices[:, :3, :3].copy(), matrices[:, :3, 3].copy()
    flip(rotations, centres, rotations[:, :, 1].mean(0), run)
    for k in run:
        doc["frames"][k]["transform_matrix"][:3] = np.concatenate(
            [rotations[k], centres[k][:, None]], 1
        ).tolist()
    (scene / "transforms.json").write_text(json.dumps(doc))
    code, checks = pose_rows(scene)
    assert code == 1 and checks["upright"]["ok"] and not checks["sequence"]["ok"]
    flipped = "/".join(Path(doc["frames"][k]["file_path"]).name for k in run)
    assert f"{flipped} turned by" in checks["sequence"]["message"]
