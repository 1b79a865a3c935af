"""Camera path files: camera_path.json round trip, keyframe interpolation, the frame check,
and `render-video --path` reading a camera_path.json, a transforms.json and a .npy; the page's
default path, render-video's default and `inspect-poses --path-out` are one path."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.data.cameras import quaternion_from_rotation, rotation_from_quaternion, view_matrix
from nerfcli.errors import DataError
from nerfcli.evaluation.camera_path import (
    Keyframe,
    default_path,
    frame_record,
    interpolate_keyframes,
    read_path_file,
    scene_fov,
    to_training_frame,
    write_camera_path,
)
from nerfcli.training.checkpoint import load_checkpoint
from tests.conftest import tiny_nerf_args, write_llff

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
TINY = tiny_nerf_args(16, 2, "[]", 8, batch_rays=64, eval_every=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("path")
    scene = write_llff(root / "tiny", n=9)
    out = root / "run"
    result = runner.invoke(app, ["train", str(scene), *TINY, "--iters", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def pose(position, target=(0.0, 0.0, -2.0)) -> np.ndarray:
    position = np.asarray(position, np.float64)
    return view_matrix(position - np.asarray(target), np.array([0.0, 1.0, 0.0]), position)


def test_round_trip_keeps_poses_fov_size_and_frame(run: Path, tmp_path: Path):
    scene = load_checkpoint(run).scene
    poses = np.stack([pose((x, 0.1, 0.0)) for x in np.linspace(-0.2, 0.2, 5)]).astype(np.float32)
    fovs = np.linspace(40.0, 60.0, 5)
    keys = [Keyframe(poses[0], 40.0, 0.0, 1.5), Keyframe(poses[-1], 60.0, 1.0, 1.5)]
    path = tmp_path / "camera_path.json"
    write_camera_path(path, poses, fovs, 24, 36, 12, frame_record(scene, run), keys)
    doc = json.loads(path.read_text())
    assert doc["render_height"] == 24 and doc["render_width"] == 36 and doc["fps"] == 12
    assert len(doc["camera_path"]) == 5 and len(doc["keyframes"]) == 2
    assert len(doc["camera_path"][0]["camera_to_world"]) == 16  # 4 x 4 row-major
    assert doc["camera_path"][0]["camera_to_world"][12:] == [0.0, 0.0, 0.0, 1.0]
    loaded = read_path_file(path, scene)
    np.testing.assert_allclose(loaded.poses, poses, atol=1e-6)
    np.testing.assert_allclose(loaded.fov, fovs)
    assert (loaded.height, loaded.width, loaded.fps, loaded.warnings) == (24, 36, 12, [])
    camera = loaded.camera(scene, 4)  # the file's size and fov become the camera
    assert (camera.height, camera.width) == (24, 36)
    assert math.isclose(2 * math.degrees(math.atan(12 / camera.K[1, 1])), 60.0, rel_tol=1e-5)


def test_another_frame_is_refused_with_the_reason(run: Path, tmp_path: Path):
    scene = load_checkpoint(run).scene
    poses = default_path(scene)[:3]
    moved = replace(scene, world_from_file=scene.world_from_file @ np.diag([2.0, 2.0, 2.0, 1.0]))
    path = tmp_path / "other.json"
    write_camera_path(path, poses, 50.0, 24, 32, 30, frame_record(moved))
    with pytest.raises(DataError, match="another frame.*world_from_file"):
        read_path_file(path, scene)
    write_camera_path(path, poses, 50.0, 24, 32, 30, frame_record(replace(scene, kind="object")))
    with pytest.raises(DataError, match=r"another frame: made for capture 'tiny' \(object\)"):
        read_path_file(path, scene)
    result = runner.invoke(app, ["render-video", str(run), "--path", str(path)])
    assert result.exit_code == 1
    assert "another frame" in result.output and "Traceback" not in result.output


def test_nerfstudio_path_without_frame_is_read_with_a_warning(run: Path, tmp_path: Path):
    scene = load_checkpoint(run).scene
    c2w = np.eye(4)
    c2w[:3, 3] = [0.0, 0.0, 0.5]
    doc = {"render_height": 20, "camera_path": [{"camera_to_world": c2w.reshape(-1).tolist()}]}
    doc["camera_path"][0].update(fov=45.0, aspect=2.0)
    path = tmp_path / "ns.json"
    path.write_text(json.dumps(doc))
    loaded = read_path_file(path, scene)
    assert (loaded.height, loaded.width) == (20, 40)
    assert "no nerfcli_frame record" in loaded.warnings[0]


def test_transforms_json_frames_in_order_move_into_the_training_frame(tmp_path: Path):
    from nerfcli.config import DataConfig
    from nerfcli.data.formats import load_scene
    from tests.unit.test_transforms import write_transforms

    root = write_transforms(tmp_path / "t", n=9)
    scene = load_scene(root, DataConfig(factor=1))
    loaded = read_path_file(root / "transforms.json", scene)
    np.testing.assert_allclose(loaded.poses, scene.c2w, atol=1e-5)  # the same cameras, in order


def test_to_training_frame_is_a_similarity(tmp_path: Path):
    rotation = rotation_from_quaternion(np.array([0.9, 0.1, -0.3, 0.2]))
    transform = np.eye(4)
    transform[:3, :3] = 2.5 * rotation
    transform[:3, 3] = [1.0, -2.0, 0.5]
    c2w = pose((0.3, 0.2, 1.0))[None]
    out = to_training_frame(c2w, transform)[0]
    np.testing.assert_allclose(out[:, :3] @ out[:, :3].T, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(
        out[:, 3], transform[:3, :3] @ c2w[0, :, 3] + transform[:3, 3], atol=1e-5
    )


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1))
def test_quaternion_round_trip(q):
    rotation = rotation_from_quaternion(np.asarray(q))
    np.testing.assert_allclose(
        rotation_from_quaternion(quaternion_from_rotation(rotation)), rotation, atol=1e-9
    )


def test_interpolation_passes_through_keyframes_at_their_times():
    keys = [
        Keyframe(pose((0.0, 0.0, 0.0)), 40.0, 0.0),
        Keyframe(pose((1.0, 0.0, 0.0)), 50.0, 1.0),
        Keyframe(pose((1.0, 1.0, 0.0)), 60.0, 3.0),
    ]
    poses, fovs = interpolate_keyframes(keys, fps=10)
    assert len(poses) == 31  # 3 s at 10 fps, both ends
    for key in keys:
        frame = round(key.time * 10)
        np.testing.assert_allclose(poses[frame], key.c2w, atol=1e-5)
        assert math.isclose(fovs[frame], key.fov)
    assert math.isclose(fovs[5], 45.0)  # half way between the first two
    rotations = poses[:, :, :3]
    np.testing.assert_allclose(
        rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (31, 3, 3)), atol=1e-5
    )
    with pytest.raises(DataError, match="same time"):
        interpolate_keyframes([keys[0], replace(keys[1], time=0.0)], fps=10)


def test_default_paths_agree(run: Path, tmp_path: Path):
    """render-video's default, inspect-poses --path-out (.npy and .json) and the page's
    default path (default_path) are one path."""
    ckpt = load_checkpoint(run)
    scene = ckpt.scene
    npy, js, used = tmp_path / "p.npy", tmp_path / "p.json", tmp_path / "used.npy"
    for out in (npy, js):
        result = runner.invoke(app, ["inspect-poses", str(scene.root), "--path-out", str(out)])
        assert result.exit_code == 0, result.output
    video = tmp_path / "v.gif"
    args = ["render-video", str(run), "--downscale", "4", "--out", str(video)]
    result = runner.invoke(app, [*args, "--poses-out", str(used), "-q"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(npy), np.load(used), atol=1e-6)
    np.testing.assert_allclose(read_path_file(js, scene).poses, np.load(used), atol=1e-6)
    np.testing.assert_allclose(default_path(scene), np.load(used), atol=1e-6)
    assert math.isclose(read_path_file(js, scene).fov[0], scene_fov(scene), rel_tol=1e-6)


def test_render_video_renders_a_path_file_at_its_size(run: Path, tmp_path: Path):
    scene = load_checkpoint(run).scene
    poses = default_path(scene)[:3]
    path = tmp_path / "camera_path.json"
    write_camera_path(path, poses, scene_fov(scene), 12, 20, 5, frame_record(scene))
    video = tmp_path / "v.gif"
    result = runner.invoke(
        app, ["render-video", str(run), "--path", str(path), "--out", str(video), "--json", "-q"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["frames"], doc["width"], doc["height"], doc["fps"]) == (3, 20, 12, 5)
    import imageio.v3 as iio

    assert iio.imread(video).shape == (3, 12, 20, 3)
