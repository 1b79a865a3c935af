"""Issue 19, words that were stale or wrong: help texts, warnings for options that were
silently ignored, the help layout at 80 columns, sfm's error order, the images_K cache's
permissions. Each test failed on the main of the day."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.config import DataConfig
from nerfcli.errors import ConfigError
from tests.conftest import write_llff

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["inspect-poses", "rays", "train", "render-video", "eval", "sfm", "demo"]


def help_at(width: int, *command: str) -> str:
    """`nerf COMMAND -h` as a terminal of `width` columns shows it (a real process)."""
    env = {**os.environ, "COLUMNS": str(width), "PYTHONPATH": str(ROOT), "TERM": "dumb"}
    env.pop("NO_COLOR", None)
    done = subprocess.run(
        [sys.executable, "-m", "nerfcli", *command, "-h"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_train_help_fits_60_lines_at_80_columns():
    text = help_at(80, "train")
    lines = text.rstrip("\n").splitlines()
    assert len(lines) <= 60, len(lines)
    assert max(len(line.rstrip()) for line in lines) <= 80
    for noise in ("<bool>", "<int range>", "<list[str]>", "[x>=1]", "<str>"):
        assert noise not in text
    # every option's help starts on its own line, beside its name
    for option, words in (
        ("--json", "Print a JSON summary"),
        ("--resume", "Continue the run"),
        ("--iters N", "Training steps"),
        ("--set KEY=VALUE", "Override a config key"),
        ("--skip-missing", "drop frames whose image"),
    ):
        row = next(line for line in lines if line.strip().startswith(option))
        assert words in row, row


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_reads_at_80_columns(command):
    text = help_at(80, command)
    assert "<bool>" not in text and "<int range>" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert f"Usage: nerf {command} [OPTIONS]" in text


def test_summaries_name_every_format_and_path():
    top = runner.invoke(app, ["--help"]).stdout
    flat = " ".join(top.split())
    assert "inspect LLFF poses" not in flat
    assert "LLFF, Blender and transforms.json" in flat
    description = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["description"]
    assert "Blender" in description and "transforms.json" in description
    inspect = " ".join(runner.invoke(app, ["inspect-poses", "-h"]).stdout.split())
    assert "(LLFF, Blender, transforms.json)" in inspect
    assert "Summarise an LLFF capture's poses" not in inspect
    rays = " ".join(runner.invoke(app, ["rays", "-h"]).stdout.split())
    assert "NDC or world rays" in rays
    video = " ".join(runner.invoke(app, ["render-video", "-h"]).stdout.split())
    assert "orbit" in video.split("--spiral")[0] and "spherical" in video


def test_model_names_mirror_the_registry():
    from nerfcli.cli.common import MODEL_NAMES
    from nerfcli.models import MODELS

    assert tuple(sorted(MODELS)) == MODEL_NAMES


def test_rays_rgb_without_out_is_refused(tmp_path):
    root = write_llff(tmp_path / "scene")
    result = runner.invoke(app, ["rays", str(root), "--view", "0", "--rgb"])
    assert result.exit_code == 2 and "--rgb" in result.output and "--out" in result.output


def test_half_res_on_llff_is_warned(tmp_path):
    root = write_llff(tmp_path / "scene")
    result = runner.invoke(app, ["rays", str(root), "--view", "0", "--half-res", "--json"])
    assert result.exit_code == 0, result.output
    assert "--half-res/--full-res is for Blender captures; ignored" in " ".join(
        result.stderr.split()
    )
    result = runner.invoke(app, ["inspect-poses", str(root), "--full-res"])
    assert result.exit_code == 0, result.output
    assert "is for Blender captures; ignored on this llff capture" in " ".join(
        result.stderr.split()
    )


def test_circle_advice_names_the_scenes_own_path():
    from nerfcli.evaluation.video import camera_path

    for own in ("orbit", "spiral"):
        scene = SimpleNamespace(render_path=own, render_poses=[], ndc=own == "spiral")
        with pytest.raises(ConfigError, match=f"use --{own}"):
            camera_path(scene, "circle", 10)
    orbit = SimpleNamespace(render_path="orbit", render_poses=[], ndc=False)
    with pytest.raises(ConfigError) as error:
        camera_path(orbit, "circle", 10)
    assert "--spiral" not in str(error.value)


def test_sfm_names_a_missing_folder_before_pycolmap(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # import pycolmap -> ImportError
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["sfm", str(missing)])
    assert result.exit_code == 1
    assert "no such folder" in result.stderr and "pycolmap" not in result.stderr
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["sfm", str(tmp_path / "empty")])
    assert "images: no such folder" in result.stderr and "pycolmap" not in result.stderr
    result = runner.invoke(app, ["sfm", str(tmp_path / "v"), "--video", str(tmp_path / "c.mp4")])
    assert "no such video file" in result.stderr
    (tmp_path / "ok" / "images").mkdir(parents=True)
    result = runner.invoke(app, ["sfm", str(tmp_path / "ok")])
    assert result.exit_code == 1 and "needs pycolmap" in result.stderr  # then the install hint


def test_resize_cache_has_mkdir_permissions(tmp_path):
    from nerfcli.data.formats import load_scene

    root = write_llff(tmp_path / "scene", height=24, width=32)
    old = os.umask(0o022)
    try:
        load_scene(root, DataConfig(factor=2))
    finally:
        os.umask(old)
    cache = root / "images_2"
    assert cache.is_dir()
    assert cache.stat().st_mode & 0o777 == 0o755


def test_warnings_are_one_line(tmp_path):
    """A lower layer's warning (skipped frames) reaches the user as one `warning:` line, not
    Python's `file:line: SkippedFramesWarning:` form with a source line under it."""
    from tests.unit.test_transforms import write_transforms

    root = write_transforms(tmp_path / "capture", n=9, size=(12, 16))
    (root / "images" / "frame_002.png").unlink()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300"}
    done = subprocess.run(
        [sys.executable, "-m", "nerfcli", "inspect-poses", str(root), "--skip-missing", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"warning: {root / 'transforms.json'}: skipped 1 frame(s) without an image: "
        "'images/frame_002.png'"
    ], done.stderr


@pytest.mark.parametrize(
    "command, argument",
    [
        ("train", "SCENE"),
        ("eval", "CHECKPOINT"),
        ("render-video", "CHECKPOINT"),
        ("rays", "SCENE"),
        ("export mesh", "CHECKPOINT"),
        ("export points", "CHECKPOINT"),
    ],
)
def test_usage_errors_name_the_argument_as_the_help_does(command, argument):
    """A missing argument's usage line says `[OPTIONS] SCENE`, as -h does, not click's
    `{scene}` (what this click and typer pair printed)."""
    result = runner.invoke(app, command.split())
    assert result.exit_code == 2
    assert f"Usage: nerf {command} [OPTIONS] {argument}" in result.output
    assert "{" not in result.output.splitlines()[0]


def test_llff_image_checks_say_which_size_is_which(tmp_path):
    """`N images of 24 x 32` said H x W without saying so, beside rows that say W x H."""
    scene = write_llff(tmp_path / "s", n=4)
    result = runner.invoke(app, ["inspect-poses", str(scene), "--factor", "1", "--json"])
    checks = {c["name"]: c["message"] for c in json.loads(result.stdout)["checks"]}
    assert "images of 24 x 32 (H x W)" in checks["images"]
