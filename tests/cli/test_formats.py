"""Every command on every capture format: detection, inspect-poses, rays (--rgb,
world_from_file), and train -> eval -> render-video end to end on tiny Blender and
transforms.json scenes; the real lego and fox captures' numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from nerfcli.cli.app import app
from nerfcli.training.checkpoint import load_checkpoint
from tests.conftest import _shared, settings_args
from tests.unit.test_blender import write_blender
from tests.unit.test_transforms import write_transforms

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_TENSORF = settings_args(
    {
        "model.tensorf.grid_init": "[8,8,8]",
        "model.tensorf.grid_final": "[8,8,8]",
        "model.tensorf.upsample_steps": "[]",
        "model.tensorf.density_components": "[2,2,2]",
        "model.tensorf.appearance_components": "[2,2,2]",
        "model.tensorf.app_dim": 4,
        "model.tensorf.decoder_width": 8,
        "model.tensorf.max_samples": 16,
        "train.batch_rays": 64,
        "train.eval_every": 2,
        "train.log_every": 1,
    }
)


def run(*args: str):
    return CliRunner().invoke(app, [*args])


@pytest.fixture
def blender_scene(tmp_path):
    return write_blender(tmp_path / "blender", counts=(4, 2, 3), size=(12, 16))


@pytest.fixture
def transforms_scene(tmp_path):
    return write_transforms(
        tmp_path / "phone", n=9, size=(12, 16), camera_model="OPENCV", k1=0.05, k2=-0.01
    )


def test_a_folder_of_no_format_names_what_was_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("inspect-poses", str(tmp_path / "empty"))
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    for marker in ("poses_bounds.npy", "transforms_train.json", "transforms.json"):
        assert marker in line


def test_inspect_poses_blender_json_plot_and_path(blender_scene, tmp_path):
    result = run("inspect-poses", str(blender_scene), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["format"] == "blender" and doc["num_views"] == 9
    assert doc["splits"] == {"train": 4, "val": 2, "test": 3}
    assert (doc["height"], doc["width"]) == (12, 16) and doc["background"] == "white"
    assert doc["focal_x"] == pytest.approx(0.5 * 16 / np.tan(0.4))
    assert doc["render_path"] == "spherical" and doc["ok"] is True
    plot, path = tmp_path / "cams.png", tmp_path / "path.npy"
    result = run("inspect-poses", str(blender_scene / "transforms_train.json"), "--plot", str(plot),
                 "--path-out", str(path))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert plot.stat().st_size > 0 and np.load(path).shape == (40, 3, 4)
    half = json.loads(run("inspect-poses", str(blender_scene), "--half-res", "--json").stdout)
    assert (half["height"], half["width"]) == (6, 8)


def test_inspect_poses_transforms(transforms_scene):
    result = run("inspect-poses", str(transforms_scene), "--factor", "1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["format"] == "transforms" and doc["num_views"] == 9
    assert doc["test_views"] == [0, 8] and doc["pixel_center"] == 0.5
    assert doc["camera_model"] == "OPENCV" and doc["distorted_views"] == 9
    assert doc["stored_focal_x"] == pytest.approx(10.0)
    assert np.asarray(doc["world_from_file"]).shape == (4, 4)


def test_rays_rgb_and_world_from_file(blender_scene, tmp_path):
    out = tmp_path / "rays.npz"
    result = run("rays", str(blender_scene), "--view", "5", "--out", str(out), "--rgb", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["format"] == "blender" and doc["ndc"] is False and doc["near"] == 2.0
    with np.load(out) as data:
        assert data["rays_o"].shape == (12, 16, 3) and data["rgb"].shape == (12, 16, 3)
        np.testing.assert_array_equal(data["world_from_file"], np.eye(4))
        meta = json.loads((blender_scene / "transforms_val.json").read_text())
        c2w = np.asarray(meta["frames"][1]["transform_matrix"])[:3]  # view 5 = val frame 1
        np.testing.assert_allclose(data["c2w"], c2w, atol=1e-6)
        assert 0.0 <= data["rgb"].min() and data["rgb"].max() <= 1.0


def test_transforms_rays_use_pixel_centres_and_distortion(transforms_scene, tmp_path):
    plain = tmp_path / "plain"
    write_transforms(plain, n=9, size=(12, 16))
    args = ["--view", "2", "--factor", "1", "--pixel", "8,6", "--json"]
    bent = json.loads(run("rays", str(transforms_scene), *args).stdout)
    ideal = json.loads(run("rays", str(plain), *args).stdout)
    assert bent["pixel_center"] == 0.5
    assert not np.allclose(bent["pixels"][0]["viewdirs"], ideal["pixels"][0]["viewdirs"])


@pytest.mark.parametrize("kind", ["blender", "transforms"])
def test_train_eval_render_video_end_to_end(kind, blender_scene, transforms_scene, tmp_path):
    scene = blender_scene if kind == "blender" else transforms_scene
    out = tmp_path / f"run_{kind}"
    factor = ["--factor", "1"] if kind == "transforms" else []
    result = run("train", str(scene), *factor, *TINY_TENSORF, "--iters", "4", "--out", str(out),
                 "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out / "ckpt.pt")
    # Blender trains with the reference's testskip 8: 4 train, 1 of 2 val, 1 of 3 test views
    assert ckpt.scene.format == kind and len(ckpt.scene.K) == (6 if kind == "blender" else 9)
    assert ckpt.scene.pixel_center == (0.0 if kind == "blender" else 0.5)
    assert ckpt.config.data.background == ("white" if kind == "blender" else "black")
    assert (ckpt.scene.distortion is None) == (kind == "blender")
    result = run("eval", str(out / "ckpt.pt"), "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [v["view"] for v in report["views"]] == (
        [6, 7, 8] if kind == "blender" else [0, 8]
    )  # the test split: Blender's (all of it), every 8th view of the transforms capture
    video = tmp_path / f"{kind}.gif"
    result = run("render-video", str(out / "ckpt.pt"), "--frames", "3", "--out", str(video),
                 "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["path"] == ("spherical" if kind == "blender" else "orbit") and doc["frames"] == 3
    result = run("render-video", str(out / "ckpt.pt"), "--frames", "3", "--path", "interpolate",
                 "--out", str(tmp_path / f"{kind}_i.gif"), "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output


def test_lego_numbers():
    lego = _shared("lego")
    doc = json.loads(run("inspect-poses", str(lego), "--json").stdout)
    assert doc["num_views"] == 400 and doc["splits"] == {"train": 100, "val": 100, "test": 200}
    assert (doc["stored_height"], doc["stored_width"]) == (800, 800)
    assert doc["stored_focal_x"] == pytest.approx(1111.11, abs=0.01)


def test_fox_numbers():
    fox = _shared("fox")
    doc = json.loads(run("inspect-poses", str(fox), "--json").stdout)
    assert doc["num_views"] == 67 and doc["format"] == "transforms"
    assert (doc["stored_height"], doc["stored_width"]) == (1920, 1080)  # portrait phone photos
    assert doc["stored_focal_x"] == pytest.approx(1375.52, abs=0.01)
    assert doc["capture"] == "surround" and doc["distorted_views"] == 67


def test_blender_frames_agree_between_inspect_poses_and_render_video(blender_scene, tmp_path):
    """inspect-poses --path-out writes the path render-video renders, with or without --frames:
    Blender's own path is nerf-pytorch's 40 poses, and --frames N gives N on the same circle
    (inspect-poses used to write 40 whatever --frames said, while render-video rendered 120)."""
    out = tmp_path / "run"
    result = run(
        "train", str(blender_scene), *TINY_TENSORF, "--iters", "2", "--out", str(out), "-q"
    )
    assert result.exit_code == 0, result.output
    for frames in ([], ["--frames", "7"]):
        written, rendered = (
            tmp_path / f"inspect{len(frames)}.npy",
            tmp_path / f"video{len(frames)}.npy",
        )
        result = run("inspect-poses", str(blender_scene), *frames, "--path-out", str(written))
        assert result.exit_code == 0, result.output
        result = run("render-video", str(out), *frames, "--poses-out", str(rendered),
                     "--out", str(tmp_path / f"v{len(frames)}.gif"), "-q")  # fmt: skip
        assert result.exit_code == 0, result.output
        path, video = np.load(written), np.load(rendered)
        assert path.shape == video.shape == ((7 if frames else 40), 3, 4)
        assert np.allclose(path, video, atol=1e-6)
