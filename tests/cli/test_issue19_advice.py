"""Issue 19, advice that does not work and valid input refused: the "--skip-missing" the
error advises exists on every command that opens a transforms.json, and a transform_matrix
whose rotation carries one uniform scale (nerfstudio, instant-ngp accept it) is a similarity,
accepted and recorded; shears, mirrors and degenerate matrices stay refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.config import DataConfig
from nerfcli.data.formats import transforms
from nerfcli.errors import DataError
from tests.unit.test_transforms import write_transforms

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def _drop_two_images(root: Path) -> None:
    (root / "images" / "frame_002.png").unlink()
    (root / "images" / "frame_005.png").unlink()


@pytest.mark.parametrize(
    "command",
    [
        ["inspect-poses", "{root}", "--json"],
        ["rays", "{root}", "--view", "0", "--json"],
        ["train", "{root}", "--iters", "1", "--out", "{tmp}/run", "--json", "--quiet"],
    ],
    ids=["inspect-poses", "rays", "train"],
)
def test_the_advised_skip_missing_exists(tmp_path, command):
    root = write_transforms(tmp_path / "capture", n=9, size=(12, 16))
    _drop_two_images(root)
    args = [a.format(root=root, tmp=tmp_path) for a in command]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1
    assert "pass --skip-missing" in refused.stderr
    extra = ["--set", "model.tensorf.grid_init=[8,8,8]"] if command[0] == "train" else []
    result = runner.invoke(app, [*args, "--skip-missing", *extra])
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # one JSON document


def _scaled(root: Path, scale: float) -> None:
    path = root / "transforms.json"
    meta = json.loads(path.read_text())
    for frame in meta["frames"]:
        m = np.array(frame["transform_matrix"])
        m[:3, :3] *= scale
        frame["transform_matrix"] = m.tolist()
    path.write_text(json.dumps(meta))


def test_uniform_scale_in_rotations_is_a_similarity(tmp_path):
    plain = transforms.load(
        write_transforms(tmp_path / "plain"), DataConfig(format="transforms", factor=1)
    )
    root = write_transforms(tmp_path / "scaled")
    _scaled(root, 2.5)
    scaled = transforms.load(root, DataConfig(format="transforms", factor=1))
    np.testing.assert_allclose(scaled.c2w, plain.c2w, atol=1e-5)  # the same cameras
    assert scaled.source["rotation_scale"] == pytest.approx([2.5, 2.5])
    assert plain.source["rotation_scale"] is None
    result = runner.invoke(app, ["inspect-poses", str(root), "--json"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda r: r.__setitem__((0, 1), r[0, 1] + 0.5), "shear or uneven scale"),
        (lambda r: r.__setitem__(slice(None), r * np.array([1.0, 2.0, 1.0])), "uneven scale"),
        (lambda r: r.__setitem__(slice(None), r * np.array([-1.0, 1.0, 1.0])), "mirror"),
        (lambda r: r.__setitem__(slice(None), 0.0), "degenerate"),
    ],
    ids=["shear", "uneven", "mirror", "zero"],
)
def test_shears_mirrors_and_degenerate_rotations_stay_refused(tmp_path, change, says):
    root = write_transforms(tmp_path / "bad")
    path = root / "transforms.json"
    meta = json.loads(path.read_text())
    m = np.array(meta["frames"][3]["transform_matrix"])
    rotation = m[:3, :3].copy()
    change(rotation)
    m[:3, :3] = rotation
    meta["frames"][3]["transform_matrix"] = m.tolist()
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=says):
        transforms.load(root, DataConfig(format="transforms", factor=1))
