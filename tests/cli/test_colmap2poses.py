"""`nerf colmap2poses` end to end on small COLMAP models built from known cameras."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.data.formats import colmap_io
from nerfcli.data.formats.colmap_model import Camera
from nerfcli.data.formats.llff import load_llff_data
from nerfcli.data.formats.poses_bounds import read_poses_bounds
from nerfcli.errors import DataError
from tests.colmap_scenes import build_capture, write_scene

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["colmap2poses", *[str(a) for a in args]])


def run_json(*args) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


@pytest.fixture
def capture():
    return build_capture(n=5, names=[f"{k + 1}.png" for k in range(5)], seed=11)


def test_json_summary_and_file_match_the_known_cameras(tmp_path, capture):
    scene = write_scene(tmp_path / "scene", capture)
    doc = run_json(scene)
    names, poses, bounds = capture.expected()
    out = scene / "poses_bounds.npy"
    assert Path(doc["out"]) == out
    assert doc["num_views"] == 5 and doc["num_points"] == 60
    assert (doc["height"], doc["width"], doc["focal"]) == (24, 32, 30.0)
    assert doc["camera_model"] == "SIMPLE_PINHOLE" and doc["format"] == "bin"
    assert doc["near_min"] == pytest.approx(bounds[:, 0].min(), rel=1e-12)
    assert doc["far_max"] == pytest.approx(bounds[:, 1].max(), rel=1e-12)
    assert doc["unregistered_images"] == [] and doc["missing_images"] == []
    assert doc["warnings"] == [] and doc["moved_to"] is None
    written = np.load(out)
    assert written.shape == (5, 17) and written.dtype == np.float64
    np.testing.assert_allclose(written[:, :15].reshape(5, 3, 5), poses, atol=1e-12)
    np.testing.assert_allclose(written[:, 15:], bounds, rtol=1e-12)
    pb = read_poses_bounds(out)  # the loader's own validation accepts it
    assert pb.num_views == 5


def test_human_summary_goes_to_stderr_only(tmp_path, capture):
    scene = write_scene(tmp_path / "scene", capture)
    result = run(scene)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "views" in result.stderr and "30" in result.stderr
    assert "poses_bounds.npy" in result.stderr.replace("\n", "").replace("│", "").replace(" ", "")


def test_text_model_folder_gives_the_same_file_as_binary(tmp_path, capture):
    binary = write_scene(tmp_path / "bin", capture, "bin", with_images=False)
    text = write_scene(tmp_path / "txt", capture, "txt", with_images=False)
    run_json(binary)
    doc = run_json(text / "sparse" / "0", "--out", tmp_path / "from_text.npy")
    assert doc["format"] == "txt"
    np.testing.assert_array_equal(
        np.load(tmp_path / "from_text.npy"), np.load(binary / "poses_bounds.npy")
    )


def test_refuses_to_overwrite_without_force(tmp_path, capture):
    scene = write_scene(tmp_path / "scene", capture, with_images=False)
    out = scene / "poses_bounds.npy"
    out.write_bytes(b"keep me")
    result = run(scene)
    assert result.exit_code == 1
    assert "--force" in result.stderr and "Traceback" not in result.stderr
    assert out.read_bytes() == b"keep me"
    assert run(scene, "--force").exit_code == 0
    assert read_poses_bounds(out).num_views == 5


def test_unregistered_images_are_reported_then_pruned_so_the_folder_loads(tmp_path, capture):
    scene = write_scene(tmp_path / "scene", capture, extra_images=("0_blurry.png", "99.png"))
    doc = run_json(scene)
    assert doc["unregistered_images"] == ["0_blurry.png", "99.png"]
    assert any("--prune-images" in w for w in doc["warnings"])
    assert (scene / "images" / "99.png").exists()  # reported, not touched
    with pytest.raises(DataError, match="7 images but poses_bounds.npy has 5 poses"):
        load_llff_data(scene, factor=1)

    doc = run_json(scene, "--prune-images", "--force")
    aside = scene / "images_unregistered"
    assert doc["moved_to"] == str(aside)
    assert sorted(p.name for p in aside.iterdir()) == ["0_blurry.png", "99.png"]
    assert sorted(p.name for p in (scene / "images").iterdir()) == sorted(capture.names)
    loaded = load_llff_data(scene, factor=1)
    assert loaded.num_views == 5
    assert [Path(f).name for f in loaded.image_files] == sorted(capture.names)


def test_prune_refuses_to_overwrite_a_file_already_set_aside(tmp_path, capture):
    scene = write_scene(tmp_path / "scene", capture, extra_images=("99.png",))
    aside = scene / "images_unregistered"
    aside.mkdir()
    (aside / "99.png").write_bytes(b"an older one")
    result = run(scene, "--prune-images")
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert (scene / "images" / "99.png").exists()
    assert (aside / "99.png").read_bytes() == b"an older one"
    assert not (scene / "poses_bounds.npy").exists()  # nothing written either


def test_prune_without_a_photo_folder_is_an_error(tmp_path, capture):
    scene = write_scene(tmp_path / "scene", capture, with_images=False)
    doc = run_json(scene)
    assert any("no photo folder" in w for w in doc["warnings"])
    result = run(scene, "--prune-images", "--force")
    assert result.exit_code == 1 and "--images" in result.stderr


def test_registered_photos_missing_from_the_folder_are_reported(tmp_path, capture):
    scene = write_scene(tmp_path / "scene", capture)
    (scene / "images" / "3.png").unlink()
    doc = run_json(scene)
    assert doc["missing_images"] == ["3.png"]


def test_other_reconstructions_are_mentioned(tmp_path, capture):
    scene = write_scene(tmp_path / "scene", capture, with_images=False)
    shutil.copytree(scene / "sparse" / "0", scene / "sparse" / "1")
    doc = run_json(scene)
    assert any("ignoring 1" in w for w in doc["warnings"])


@pytest.mark.parametrize(
    ("model_name", "params", "fragment"),
    [
        ("PINHOLE", [30.0, 32.0, 16.0, 12.0], "fx=30 != fy=32"),
        ("SIMPLE_RADIAL", [30.0, 16.0, 12.0, -0.02], "distortion (k=-0.02)"),
        ("OPENCV", [30.0, 30.0, 16.0, 12.0, 0.0, 0.0, 0.001, 0.0], "distortion (p1=0.001)"),
    ],
)
def test_camera_model_warnings_reach_json_and_stderr(tmp_path, model_name, params, fragment):
    camera = Camera(1, model_name, 32, 24, np.array(params))
    scene = write_scene(tmp_path / "scene", build_capture(n=3, cameras=[camera]), with_images=False)
    doc = run_json(scene)
    assert doc["camera_model"] == model_name
    assert any(fragment in w for w in doc["warnings"])
    result = run(scene, "--force")
    assert result.exit_code == 0 and "warning:" in result.stderr


def test_fisheye_model_is_refused(tmp_path):
    camera = Camera(1, "OPENCV_FISHEYE", 32, 24, np.array([30.0, 30.0, 16, 12, 0, 0, 0, 0]))
    scene = write_scene(tmp_path / "scene", build_capture(n=3, cameras=[camera]), with_images=False)
    result = run(scene)
    assert result.exit_code == 1
    assert "OPENCV_FISHEYE" in result.stderr and "image_undistorter" in result.stderr
    assert not (scene / "poses_bounds.npy").exists()


def test_bad_input_is_one_error_line(tmp_path, capture):
    result = run(tmp_path / "nowhere")
    assert result.exit_code == 1
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    scene = write_scene(tmp_path / "scene", capture, with_images=False)
    images_bin = scene / "sparse" / "0" / "images.bin"
    images_bin.write_bytes(images_bin.read_bytes()[:-5])
    result = run(scene)
    assert result.exit_code == 1
    assert "images.bin" in result.stderr and "Traceback" not in result.stderr
    assert not (scene / "poses_bounds.npy").exists()


def inspect(path: Path) -> tuple[int, dict]:
    result = runner.invoke(app, ["inspect-poses", str(path), "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_round_trip_through_inspect_poses(tmp_path, capture):
    scene = write_scene(tmp_path / "scene", capture, extra_images=("99.png",))
    run_json(scene)
    code, doc = inspect(scene)  # the unregistered photo breaks the folder ...
    assert code == 1 and not doc["ok"]
    assert any("--prune-images" in c["message"] for c in doc["checks"] if not c["ok"])
    run_json(scene, "--prune-images", "--force")
    code, doc = inspect(scene)  # ... and pruning fixes it
    assert code == 0 and doc["ok"], [c for c in doc["checks"] if not c["ok"]]
    assert doc["num_views"] == 5 and (doc["height"], doc["width"], doc["focal"]) == (24, 32, 30)
    assert {c["name"] for c in doc["checks"]} >= {"rotation", "bounds", "images"}


def test_cup_reproduces_the_shipped_poses_bounds(cup_dir, tmp_path):
    out = tmp_path / "cup_poses_bounds.npy"
    doc = run_json(cup_dir, "--out", out)
    assert doc["num_views"] == 77 and doc["unregistered_images"] == []
    assert (doc["height"], doc["width"]) == (600, 800)
    assert any("77 cameras with different intrinsics" in w for w in doc["warnings"])
    reference = np.load(cup_dir / "poses_bounds.npy")
    written = np.load(out)
    assert np.abs(written[:, :15] - reference[:, :15]).max() < 1e-6
    assert (np.abs(written[:, 15:] - reference[:, 15:]) / reference[:, 15:]).max() < 1e-6
    assert colmap_io.locate_model(cup_dir).model_dir.name == "0"
    code, report = inspect(out)
    assert code == 0 and report["ok"] and report["num_views"] == 77
