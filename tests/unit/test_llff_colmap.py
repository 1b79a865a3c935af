"""Per-view cameras of an LLFF capture from the COLMAP model beside it, matched by name."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfcli.config import DataConfig
from nerfcli.data.formats import load_scene
from nerfcli.data.formats.llff_colmap import CameraFallbackWarning
from nerfcli.data.rays import camera_rays
from tests.scene_types import write_colmap_surround

# names whose text order (1, 10, 2, 20, 3, 7) is neither file-creation nor numeric order
NAMES = ["3.jpg", "10.jpg", "1.jpg", "2.jpg", "20.jpg", "7.jpg"]
FOCALS = [30.0, 31.0, 32.0, 33.0, 34.0, 35.0]
AUTO = DataConfig(factor=0)


def expected_focals(names=NAMES, focals=FOCALS) -> list[float]:
    """Each view's focal in view order (sorted names), from the name -> focal table."""
    by_name = dict(zip(names, focals, strict=True))
    return [by_name[name] for name in sorted(names)]


def test_each_view_gets_its_own_camera_by_name(tmp_path: Path):
    root = write_colmap_surround(tmp_path / "cap", NAMES, FOCALS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CameraFallbackWarning)
        scene = load_scene(root, AUTO)
    assert [Path(f).name for f in scene.image_files] == sorted(NAMES)
    np.testing.assert_allclose(scene.K[:, 0, 0], expected_focals(), rtol=1e-6)
    np.testing.assert_allclose(scene.K[:, 1, 1], expected_focals(), rtol=1e-6)
    np.testing.assert_allclose(scene.K[:, :2, 2], [[16.0, 12.0]] * 6, rtol=1e-6)
    assert scene.pixel_center == 0.5 and scene.distortion is None
    assert (
        "per view from" in scene.source["cameras"]
        and "matched by image name" in (scene.source["cameras"])
    )


def test_the_factor_scales_each_camera(tmp_path: Path):
    root = write_colmap_surround(tmp_path / "cap", NAMES, FOCALS)
    scene = load_scene(root, replace(AUTO, factor=2), load_images=False)
    assert (scene.height, scene.width) == (12, 16)
    np.testing.assert_allclose(scene.K[:, 0, 0], np.array(expected_focals()) / 2, rtol=1e-6)
    np.testing.assert_allclose(scene.K[:, :2, 2], [[8.0, 6.0]] * 6, rtol=1e-6)


def test_llff_camera_keeps_the_single_camera(tmp_path: Path):
    root = write_colmap_surround(tmp_path / "cap", NAMES, FOCALS)
    scene = load_scene(root, replace(AUTO, llff={"llff_camera": True}), load_images=False)
    # poses_bounds.npy's hwf is the model's first camera (camera 1: 3.jpg, focal 30)
    np.testing.assert_allclose(scene.K[:, 0, 0], 30.0)
    assert scene.pixel_center == 0.0 and scene.source["cameras"] is None


def test_an_image_without_a_camera_falls_back_with_a_warning(tmp_path: Path):
    root = write_colmap_surround(tmp_path / "cap", NAMES, FOCALS)
    (root / "images" / "20.jpg").rename(root / "images" / "21.jpg")  # not in the model
    with pytest.warns(CameraFallbackWarning, match=r"no camera for 1 of the 6 images \(21.jpg\)"):
        scene = load_scene(root, AUTO, load_images=False)
    np.testing.assert_allclose(scene.K[:, 0, 0], 30.0)  # every view: the LLFF camera
    assert scene.pixel_center == 0.0 and scene.source["cameras"] is None


def test_a_model_of_other_poses_falls_back(tmp_path: Path):
    root = write_colmap_surround(tmp_path / "cap", NAMES, FOCALS)
    other = write_colmap_surround(tmp_path / "other", NAMES, FOCALS, radius=5.0)
    shutil.rmtree(root / "sparse")
    shutil.copytree(other / "sparse", root / "sparse")
    with pytest.warns(CameraFallbackWarning, match="not the model these poses came from"):
        scene = load_scene(root, AUTO, load_images=False)
    assert scene.source["cameras"] is None


def test_radial_distortion_reaches_the_rays(tmp_path: Path):
    root = write_colmap_surround(tmp_path / "cap", NAMES, FOCALS, "RADIAL", (0.05, -0.01))
    scene = load_scene(root, AUTO, load_images=False)
    np.testing.assert_allclose(scene.distortion, [[0.05, -0.01, 0, 0, 0, 0]] * 6, rtol=1e-6)
    camera = scene.camera(2)
    pinhole = replace(camera, distortion=None)
    bent, straight = camera_rays(camera), camera_rays(pinhole)
    # the principal point's ray is the same; a corner's differs
    torch.testing.assert_close(bent.viewdirs[12, 16], straight.viewdirs[12, 16], atol=2e-3, rtol=0)
    assert (bent.viewdirs[0, 0] - straight.viewdirs[0, 0]).abs().max() > 1e-3


def test_unsupported_lens_falls_back(tmp_path: Path):
    from nerfcli.data.formats.colmap_io import read_model, write_model
    from nerfcli.data.formats.colmap_model import Camera

    root = write_colmap_surround(tmp_path / "cap", NAMES, FOCALS)
    model = read_model(root / "sparse" / "0")  # view 4 (3.jpg, camera 1) becomes a fisheye
    model.cameras[0] = Camera(
        1, "OPENCV_FISHEYE", 32, 24, np.array([30, 30, 16, 12, 0.01, 0, 0, 0])
    )
    write_model(model, root / "sparse" / "0", "bin")
    with pytest.warns(CameraFallbackWarning, match="OPENCV_FISHEYE"):
        scene = load_scene(root, AUTO, load_images=False)
    assert scene.distortion is None and scene.pixel_center == 0.0


def test_without_images_the_model_names_give_the_order(tmp_path: Path):
    root = write_colmap_surround(tmp_path / "cap", NAMES, FOCALS)
    shutil.rmtree(root / "images")
    scene = load_scene(root, replace(AUTO, factor=1), load_images=False)
    np.testing.assert_allclose(scene.K[:, 0, 0], expected_focals(), rtol=1e-6)


def test_cup_uses_its_77_cameras(cup_dir: Path):
    from nerfcli.data.formats.colmap_io import read_model

    model = read_model(cup_dir / "sparse" / "0")
    focal = {image.name: model.cameras[image.camera_id - 1].params[0] for image in model.images}
    scene = load_scene(cup_dir, replace(AUTO, factor=8), load_images=False)
    names = sorted(p.name for p in (cup_dir / "images").iterdir())
    np.testing.assert_allclose(scene.K[:, 0, 0], [focal[n] / 8 for n in names], rtol=1e-5)
    assert 529 / 8 < scene.K[:, 0, 0].min() < scene.K[:, 0, 0].max() < 632 / 8 + 1
