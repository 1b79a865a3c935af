"""Paths with spaces and unicode: a scene folder, image names and output folders like
"my scène 📷/" work through inspect-poses, rays, train (and --resume), eval and render-video."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.data.formats.llff import load_llff_data
from nerfcli.training.checkpoint import load_checkpoint
from tests.conftest import tiny_nerf_args, write_llff

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = tiny_nerf_args(16, 2, "[]", 8, batch_rays=64, eval_every=2, ckpt_every=2)


def image_name(view: int) -> str:
    return f"vue {view:02d} – é 📷.png"


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    """A 9-view capture in "my scène 📷/capture ü/", images named "vue 00 – é 📷.png"..."""
    root = write_llff(tmp_path / "my scène 📷" / "capture ü", n=9)
    for view, path in enumerate(sorted((root / "images").iterdir())):
        path.rename(path.with_name(image_name(view)))
    return root


def test_every_command_with_spaces_and_unicode(scene: Path, tmp_path: Path):
    out_dir = tmp_path / "out dir ü"
    out_dir.mkdir()

    # The images load in name order, under their unicode names.
    loaded = load_llff_data(scene, factor=1)
    assert [Path(f).name for f in loaded.image_files] == [image_name(v) for v in range(9)]
    pixels = iio.imread(scene / "images" / image_name(3))
    np.testing.assert_array_equal(np.round(loaded.images[3] * 255).astype(np.uint8), pixels)

    result = runner.invoke(
        app, ["inspect-poses", str(scene), "--json", "--plot", str(out_dir / "caméras 📷.png")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["num_views"] == 9
    assert iio.imread(out_dir / "caméras 📷.png").ndim == 3

    rays_file = out_dir / "rays ✓.npz"
    result = runner.invoke(app, ["rays", str(scene), "--view", "2", "--out", str(rays_file)])
    assert result.exit_code == 0, result.output
    with np.load(rays_file) as data:
        assert data["rays_o"].shape == (24, 32, 3)  # the auto factor of 24 x 32 photos: 1

    run = out_dir / "run 📷"
    result = runner.invoke(
        app, ["train", str(scene), *TINY, "--iters", "4", "--out", str(run), "--json", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoint"] == str(run / "ckpt.pt")
    ckpt = load_checkpoint(run / "ckpt.pt")
    assert ckpt.scene.image_files == [image_name(v) for v in range(9)]
    assert ckpt.scene.root == scene.resolve()
    previews = {p.name for p in (run / "previews").iterdir()}
    assert {"step_0000002.png", "step_0000004.png"} <= previews

    result = runner.invoke(
        app, ["train", str(scene), "--out", str(run), "--resume", "--iters", "6", "--json", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["start_step"] == 4

    # eval finds the scene through the unicode path stored in the checkpoint.
    result = runner.invoke(app, ["eval", str(run / "ckpt.pt"), "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["step"] == 6 and [v["view"] for v in report["views"]] == [0, 8]
    assert Path(report["out_dir"]) == run / "eval" / "step_0000006"
    assert iio.imread(report["views"][0]["files"]["render"]).shape == (24, 32, 3)

    video = out_dir / "vidéo 📷.mp4"
    path_file = out_dir / "chemin ü.npy"
    result = runner.invoke(
        app,
        ["render-video", str(run), "--frames", "3", "--out", str(video)]
        + ["--depth", "--poses-out", str(path_file), "-q"],
    )
    assert result.exit_code == 0, result.output
    assert len(list(iio.imiter(video))) == 3
    assert (out_dir / "vidéo 📷_depth.mp4").is_file()
    gif = out_dir / "aperçu 📷.gif"
    result = runner.invoke(
        app, ["render-video", str(run), "--path", str(path_file), "--out", str(gif), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert iio.imread(gif, index=None).shape[:3] == (3, 24, 32)
    assert not [p for p in out_dir.rglob(".*")], "temp files left behind"


def test_unicode_paths_in_a_c_locale_subprocess(scene: Path, tmp_path: Path):
    """Real argv and stdio encoding: a C locale must not break unicode paths or messages."""
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    env.pop("PYTHONIOENCODING", None)
    command = [sys.executable, "-m", "nerfcli", "inspect-poses", str(scene), "--json"]
    done = subprocess.run(command, capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert json.loads(done.stdout)["path"] == str(scene / "poses_bounds.npy")

    missing = tmp_path / "nowhere ü 📷"
    command = [sys.executable, "-m", "nerfcli", "inspect-poses", str(missing)]
    done = subprocess.run(command, capture_output=True, env=env, timeout=120)
    assert done.returncode == 1
    stderr = done.stderr.decode("utf-8", errors="replace")
    assert "Traceback" not in stderr and "no such file or folder" in stderr
    assert len([line for line in stderr.splitlines() if line.startswith("error:")]) == 1
