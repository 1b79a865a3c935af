"""Bad input to `nerf inspect-poses` and `nerf rays`: exit 1 (2 for usage), one line naming the
file and the problem, never a traceback, and no output file left behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from tests.conftest import write_llff

runner = CliRunner()


@dataclass
class Case:
    name: str
    make: Callable[[Path], Path]  # builds the bad input under a folder, returns the CLI argument
    message: str  # expected in the error line
    fatal: bool  # True: inspect-poses prints nothing on stdout; False: a report with ok=false


def _scene(tmp: Path, with_images: bool = False) -> Path:
    return write_llff(tmp / "scene", with_images=with_images)


def _edit_poses(edit: Callable[[np.ndarray], np.ndarray | None]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        root = _scene(tmp)
        arr = np.load(root / "poses_bounds.npy")
        changed = edit(arr)
        np.save(root / "poses_bounds.npy", arr if changed is None else changed)
        return root / "poses_bounds.npy"

    return make


def _truncated(tmp: Path) -> Path:
    path = _scene(tmp) / "poses_bounds.npy"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _not_npy(tmp: Path) -> Path:
    path = _scene(tmp) / "poses_bounds.npy"
    path.write_text("# this is a text file, not numpy\n1 2 3\n")
    return path


def _set(index, value):
    def edit(arr: np.ndarray) -> None:
        arr[index] = value

    return edit


POSES_CASES = [
    Case("truncated", _truncated, "truncated", True),
    Case("not npy", _not_npy, "not a NumPy .npy file", True),
    Case("1-D array", _edit_poses(lambda a: a.ravel()), "expected an N x 17 array", True),
    Case("N x 15", _edit_poses(lambda a: a[:, :15]), "got shape 6x15", True),
    Case("strings", _edit_poses(lambda a: a.astype(str)), "expected a numeric", True),
    Case("empty", _edit_poses(lambda a: a[:0]), "got shape 0x17", True),
    Case("NaN pose", _edit_poses(_set((2, 7), np.nan)), "view 2 has non-finite", False),
    Case("zero near", _edit_poses(_set((1, 15), 0.0)), "near=0", False),
    Case("negative bounds", _edit_poses(_set((3, slice(15, 17)), -2.0)), "near=-2", False),
    Case("near >= far", _edit_poses(_set((0, 16), 1.0)), "need 0 < near < far", False),
    Case("not orthonormal", _edit_poses(_set((4, 0), 3.0)), "not orthonormal", False),
    Case("zero height", _edit_poses(_set((0, 4), 0.0)), "height 0", False),
]


def _missing_folder(tmp: Path) -> Path:
    return tmp / "no_such_scene"


def _folder_without_poses(tmp: Path) -> Path:
    (tmp / "empty_scene").mkdir()
    return tmp / "empty_scene"


PATH_CASES = [
    Case("missing folder", _missing_folder, "no such file or folder", True),
    Case("folder without poses", _folder_without_poses, "no poses_bounds.npy", True),
]


def assert_one_clean_line(result, name: str) -> str:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert name in lines[0]
    return lines[0]


@pytest.mark.parametrize("case", POSES_CASES + PATH_CASES, ids=lambda c: c.name)
def test_inspect_poses_bad_file(tmp_path, case):
    target = case.make(tmp_path)
    plot, path_out = tmp_path / "cameras.png", tmp_path / "path.npy"
    result = runner.invoke(
        app,
        ["inspect-poses", str(target), "--json", "--plot", str(plot), "--path-out", str(path_out)],
    )
    assert result.exit_code == 1
    line = assert_one_clean_line(result, target.name)
    assert str(target) in line
    assert case.message in line
    if case.fatal:
        assert result.stdout == ""
    else:
        doc = json.loads(result.stdout)
        assert doc["ok"] is False
        assert any(case.message in c["message"] for c in doc["checks"] if not c["ok"])
    assert not plot.exists() and not path_out.exists()
    assert not list(tmp_path.glob(".cameras.png*")) and not list(tmp_path.glob(".path.npy*"))


@pytest.mark.parametrize("case", POSES_CASES + PATH_CASES, ids=lambda c: c.name)
def test_inspect_poses_bad_file_human_view(tmp_path, case):
    # Without --json the last stderr line is still the one error line; stdout stays empty.
    target = case.make(tmp_path)
    result = runner.invoke(app, ["inspect-poses", str(target)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(target) in last and case.message in last
    if case.fatal:
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("case", POSES_CASES + PATH_CASES, ids=lambda c: c.name)
def test_rays_bad_file(tmp_path, case):
    target = case.make(tmp_path)
    out = tmp_path / "rays.npz"
    result = runner.invoke(app, ["rays", str(target), "--view", "0", "--out", str(out), "--json"])
    assert result.exit_code == 1
    line = assert_one_clean_line(result, target.name)
    assert case.message in line
    assert result.stdout == ""
    assert not out.exists()


def test_image_count_mismatch(tmp_path):
    root = _scene(tmp_path, with_images=True)
    extra = root / "images" / "zzz_extra.png"
    extra.write_bytes((root / "images" / "img000.png").read_bytes())
    plot = tmp_path / "cameras.png"
    result = runner.invoke(app, ["inspect-poses", str(root), "--json", "--plot", str(plot)])
    assert result.exit_code == 1
    line = assert_one_clean_line(result, "poses_bounds.npy")
    assert str(root / "images") in line and "7 images but poses_bounds.npy has 6 poses" in line
    assert "--prune-images" in line  # the fix for extra images
    assert json.loads(result.stdout)["ok"] is False
    assert not plot.exists()


def test_corrupt_image(tmp_path):
    root = _scene(tmp_path, with_images=True)
    bad = root / "images" / "img003.png"
    bad.write_bytes(bad.read_bytes()[:40])  # a PNG cut off after its header
    path_out = tmp_path / "path.npy"
    result = runner.invoke(app, ["inspect-poses", str(root), "--json", "--path-out", str(path_out)])
    assert result.exit_code == 1
    line = assert_one_clean_line(result, bad.name)
    assert "cannot read image" in line
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert not checks["images"]["ok"] and str(bad) in checks["images"]["message"]
    assert not path_out.exists()


def test_garbage_image(tmp_path):
    root = _scene(tmp_path, with_images=True)
    bad = root / "images" / "img001.png"
    bad.write_bytes(b"definitely not a png")
    result = runner.invoke(app, ["inspect-poses", str(root), "--json"])
    assert result.exit_code == 1
    assert_one_clean_line(result, bad.name)


def test_rays_does_not_need_images(tmp_path):
    # rays reads only the poses, so a broken image folder does not stop it.
    root = _scene(tmp_path, with_images=True)
    (root / "images" / "img001.png").write_bytes(b"broken")
    result = runner.invoke(app, ["rays", str(root), "--view", "1", "--json"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("view", ["6", "100", "-1"])
def test_view_out_of_range(tmp_path, view):
    root = _scene(tmp_path)
    out = tmp_path / "rays.npz"
    result = runner.invoke(app, ["rays", str(root), "--view", view, "--out", str(out)])
    assert result.exit_code == 1
    line = assert_one_clean_line(result, "poses_bounds.npy")
    assert f"view {view} is out of range" in line and "6 views (0..5)" in line
    assert not out.exists()


@pytest.mark.parametrize("pixel", ["3", "a,b", "1,2,3", "1.5,2", ""])
def test_malformed_pixel_is_a_usage_error(tmp_path, pixel):
    root = _scene(tmp_path)
    out = tmp_path / "rays.npz"
    result = runner.invoke(
        app, ["rays", str(root), "--view", "0", "--pixel", pixel, "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "--pixel" in result.output and "X,Y" in result.output
    assert result.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize("pixel", ["32,0", "0,24", "-1,0", "5,-3"])
def test_pixel_out_of_range(tmp_path, pixel):
    root = _scene(tmp_path)
    out = tmp_path / "rays.npz"
    result = runner.invoke(
        app,
        ["rays", str(root), "--view", "0", "--factor", "1", "--pixel", pixel, "--out", str(out)],
    )
    assert result.exit_code == 1
    line = assert_one_clean_line(result, "poses_bounds.npy")
    assert f"pixel {pixel} is outside" in line and "X in 0..31, Y in 0..23" in line
    assert not out.exists()


def test_factor_too_large(tmp_path):
    root = _scene(tmp_path)
    for command in (["inspect-poses", str(root)], ["rays", str(root), "--view", "0"]):
        result = runner.invoke(app, [*command, "--factor", "64"])
        assert result.exit_code == 2  # a usage error (issue 19), naming the flag
        line = assert_one_clean_line(result, "poses_bounds.npy")
        assert "--factor 64: shrinks the 32 x 24 (W x H) images" in line


@pytest.mark.parametrize(
    "args",
    [
        ["rays", "{root}"],  # --view missing
        ["rays", "{root}", "--view", "x"],
        ["rays", "{root}", "--view", "0", "--factor", "0"],
        ["rays", "{root}", "--view", "0", "--out", "rays.txt"],
        ["inspect-poses", "{root}", "--factor", "0"],
        ["inspect-poses", "{root}", "--plot", "cameras.pdf"],
        ["inspect-poses"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    root = _scene(tmp_path)
    result = runner.invoke(app, [a.format(root=root) for a in args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert not (Path.cwd() / "rays.txt").exists() and not (Path.cwd() / "cameras.pdf").exists()


def test_output_folder_must_exist(tmp_path):
    root = _scene(tmp_path)
    out = tmp_path / "missing" / "rays.npz"
    result = runner.invoke(app, ["rays", str(root), "--view", "0", "--out", str(out)])
    assert result.exit_code == 1
    line = assert_one_clean_line(result, "rays.npz")
    assert "does not exist" in line
