"""instant-ngp / nerfstudio transforms.json loader: the fox capture, rays with and without
distortion, intrinsics, splits, images_N, missing frames, every bad input, the training-frame
normalisation and orbit path, and hypothesis fuzzing. Tiny captures are written here."""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nerfcli.config import DataConfig
from nerfcli.data.cameras import Camera
from nerfcli.data.distortion import distort
from nerfcli.data.formats import transforms
from nerfcli.data.rays import camera_pixel_rays, camera_rays
from nerfcli.errors import DataError
from tests.unit.test_blender import corrupt

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TARGET = np.array([1.0, 2.0, 3.0])  # what the tiny captures look at
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fox_dir() -> Path:
    path = SHARED_DATA / "fox"
    if not (path / "transforms.json").is_file():
        pytest.skip(f"real capture 'fox' not found at {path} (CI and the team have ../shared)")
    return path


def cfg(**kw) -> DataConfig:
    """A data config with transforms.json's own option (skip_missing) in data.transforms."""
    own = {"skip_missing": kw.pop("skip_missing")} if "skip_missing" in kw else {}
    return DataConfig(**{"factor": 1, "transforms": own, **kw})


def look_at(position, target=TARGET) -> list[list[float]]:
    """4x4 OpenGL camera-to-world looking from position at target, z up."""
    position = np.asarray(position, dtype=np.float64)
    back = (position - target) / np.linalg.norm(position - target)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, :4] = np.stack([right, np.cross(back, right), back, position], 1)
    return m.tolist()


def write_transforms(root: Path, n: int = 9, size=(6, 8), ext=".png", value=None, **top) -> Path:
    """n cameras on a tilted circle of radius 3 around TARGET, RGB noise images (or `value`)."""
    rng = np.random.default_rng(n)
    (root / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for k in range(n):
        t = 2 * math.pi * k / n
        pos = TARGET + [3 * math.cos(t), 3 * math.sin(t), 0.5 + 0.3 * math.sin(t)]
        name = f"images/frame_{k:03d}{ext}"
        pixels = (
            rng.integers(0, 256, (*size, 3), np.uint8)
            if value is None
            else np.full((*size, 3), value, np.uint8)
        )
        Image.fromarray(pixels).save(root / (name if ext else name + ".png"))
        frames.append({"file_path": name, "transform_matrix": look_at(pos)})
    meta = {
        "fl_x": 10.0,
        "fl_y": 11.0,
        "cx": 4.2,
        "cy": 2.9,
        "w": size[1],
        "h": size[0],
        "frames": frames,
    }
    meta.update(top)
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def edit(root: Path, change) -> None:
    path = root / "transforms.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


# ----------------------------------------------------------------------------- fox


def test_fox_loads_with_its_camera():
    scene = transforms.load(fox_dir(), cfg(), load_images=False)
    assert scene.num_views == 67 and (scene.height, scene.width) == (1920, 1080)  # portrait
    assert scene.K[0, 0, 0] == pytest.approx(1375.52) and scene.K[0, 1, 1] == pytest.approx(1374.49)
    assert scene.K[0, :2, 2].tolist() == pytest.approx([554.558, 965.268])
    assert scene.distortion[0].tolist() == pytest.approx(
        [0.0578421, -0.0805099, -0.000980296, 0.00015575, 0, 0]
    )
    assert scene.pixel_center == 0.5 and scene.kind == "unbounded" and scene.render_path == "orbit"
    assert scene.splits["test"] == list(range(0, 67, 8)) and len(scene.splits["train"]) == 58
    assert scene.source["aabb_scale"] == 4 and scene.source["centre"] == "focus"
    assert Path(scene.image_files[0]).name == "0001.jpg"
    distance = np.linalg.norm(scene.c2w[:, :, 3], axis=1)
    assert distance.mean() == pytest.approx(1.0, abs=1e-5) and scene.far > 2 * distance.max()
    raw = json.loads((fox_dir() / "transforms.json").read_text())
    file_pos = np.array(raw["frames"][0]["transform_matrix"])[:, 3]
    assert np.allclose((scene.world_from_file @ file_pos)[:3], scene.c2w[0, :, 3], atol=1e-5)


def test_fox_images_at_factor_8():
    scene = transforms.load(fox_dir(), cfg(factor=8))
    assert (
        scene.images.shape == (67, 240, 135, 3)
        and scene.source["image_folder"] == "resized in-process"
    )
    assert scene.K[0, 0, 0] == pytest.approx(1375.52 / 8) and scene.K[0, 0, 2] == pytest.approx(
        554.558 / 8
    )


def test_fox_rays_project_back_onto_their_pixels():
    scene = transforms.load(fox_dir(), cfg(), load_images=False)
    camera = scene.camera(0)
    cols, rows = (
        torch.tensor([0.0, 1079.0, 540.0, 17.0]),
        torch.tensor([0.0, 1919.0, 960.0, 1500.0]),
    )
    d = camera_pixel_rays(camera, cols, rows).directions.double()  # world frame
    local = d @ torch.as_tensor(camera.c2w[:, :3], dtype=torch.float64)  # R^T d
    x, y = local[:, 0] / -local[:, 2], -local[:, 1] / -local[:, 2]
    xd, yd = distort(x, y, torch.as_tensor(camera.distortion))
    K = camera.K
    assert torch.allclose(xd * K[0, 0] + K[0, 2], cols.double() + 0.5, atol=1e-3)
    assert torch.allclose(yd * K[1, 1] + K[1, 2], rows.double() + 0.5, atol=1e-3)


@pytest.mark.parametrize("distorted", [False, True])
def test_ray_through_the_principal_point_is_the_optical_axis(tmp_path, distorted):
    extra = {"k1": 0.1, "k2": -0.05, "p1": 0.01, "p2": -0.02} if distorted else {}
    scene = transforms.load(write_transforms(tmp_path, **extra), cfg(), load_images=False)
    camera = scene.camera(3)
    assert (camera.distortion is not None) == distorted
    rays = camera_pixel_rays(camera, [4.2 - 0.5], [2.9 - 0.5])  # pixel_center 0.5
    direction = rays.directions[0].numpy()
    assert np.allclose(direction / np.linalg.norm(direction), -scene.c2w[3][:, 2], atol=1e-6)


def test_zero_distortion_equals_the_pinhole_rays(tmp_path):
    scene = transforms.load(write_transforms(tmp_path), cfg(), load_images=False)
    assert scene.distortion is None
    pinhole = scene.camera(1)
    zero = Camera(**{**pinhole.__dict__, "distortion": np.zeros(6, np.float32)})
    assert torch.equal(camera_rays(pinhole).directions, camera_rays(zero).directions)
    tiny = Camera(**{**pinhole.__dict__, "distortion": np.array([1e-3, 0, 0, 0, 0, 0], np.float32)})
    assert not torch.equal(camera_rays(pinhole).directions, camera_rays(tiny).directions)


def test_distorted_views_sharing_a_lens_get_their_own_rays(tmp_path):
    """camera_rays undistorts a lens once (cached by value) and rotates per view: each view's
    rays are still camera_pixel_rays' at every pixel (computed afresh), a lens with other
    coefficients gets other rays, and the cached grid is not written by the first caller."""
    extra = {"k1": 0.1, "k2": -0.05, "p1": 0.01, "p2": -0.02}
    scene = transforms.load(write_transforms(tmp_path, **extra), cfg(), load_images=False)
    first, second = scene.camera(1), scene.camera(3)
    assert np.array_equal(first.distortion, second.distortion)
    assert not np.allclose(first.c2w, second.c2w)
    rows, cols = torch.meshgrid(
        torch.arange(first.height, dtype=torch.float32),
        torch.arange(first.width, dtype=torch.float32),
        indexing="ij",
    )
    for camera in (first, second, first):
        rays = camera_rays(camera)
        rays.directions.mul_(0.0)  # a caller writing its rays leaves the cache alone
        again = camera_rays(camera).directions.reshape(-1, 3)
        fresh = camera_pixel_rays(camera, cols.reshape(-1), rows.reshape(-1)).directions
        assert torch.allclose(again, fresh, atol=1e-6)
    other = Camera(**{**first.__dict__, "distortion": first.distortion * 0.5})
    assert not torch.allclose(camera_rays(other).directions, camera_rays(first).directions)


# ----------------------------------------------------------------------------- intrinsics


def test_per_frame_intrinsics_override_and_angle_fallbacks(tmp_path):
    root = write_transforms(tmp_path)
    edit(root, lambda m: m["frames"][2].update(fl_x=50.0, cx=3.0, k1=0.2))
    scene = transforms.load(root, cfg(), load_images=False)
    assert scene.K[2, 0, 0] == 50.0 and scene.K[2, 0, 2] == 3.0 and scene.K[1, 0, 0] == 10.0
    assert scene.distortion[2, 0] == pytest.approx(0.2) and not scene.distortion[1].any()
    for key in ("fl_x", "fl_y", "cx", "cy"):
        edit(root, lambda m, key=key: m.pop(key))
    edit(root, lambda m: m.update(camera_angle_x=1.0))
    scene = transforms.load(root, cfg(), load_images=False)
    fl = 0.5 * 8 / math.tan(0.5)
    assert scene.K[0, 0, 0] == pytest.approx(fl) and scene.K[0, 1, 1] == pytest.approx(fl)
    assert scene.K[0, :2, 2].tolist() == [4.0, 3.0]
    edit(root, lambda m: m.update(camera_angle_y=0.5))
    assert transforms.load(root, cfg(), load_images=False).K[0, 1, 1] == pytest.approx(
        3 / math.tan(0.25)
    )


def test_size_from_the_images_and_nerfstudio_distortion_params(tmp_path):
    root = write_transforms(tmp_path, distortion_params=[0.1, 0.2, 0.3, 0.4, 0.01, 0.02])
    edit(root, lambda m: (m.pop("w"), m.pop("h")))
    scene = transforms.load(root, cfg(), load_images=False)
    assert (scene.height, scene.width) == (6, 8)
    assert scene.distortion[0].tolist() == pytest.approx([0.1, 0.2, 0.01, 0.02, 0.3, 0.4])


# ----------------------------------------------------------------------------- splits, order


def test_splits_from_filenames(tmp_path):
    root = write_transforms(tmp_path, n=6)
    names = [f"images/frame_{k:03d}.png" for k in range(6)]
    edit(root, lambda m: m.update(train_filenames=names[:4], val_filenames=["images/frame_004"]))
    scene = transforms.load(root, cfg(), load_images=False)
    assert scene.splits == {"train": [0, 1, 2, 3], "val": [4], "test": [4]}
    edit(root, lambda m: m.update(test_filenames=[names[5]]))
    edit(root, lambda m: m["frames"][5].update(file_path="images/frame_005"))  # no extension
    assert transforms.load(root, cfg(), load_images=False).splits["test"] == [5]
    edit(root, lambda m: m.update(test_filenames=["images/nope.png"]))
    with pytest.raises(DataError, match="test_filenames.*nope"):
        transforms.load(root, cfg(), load_images=False)


def test_every_eighth_view_is_held_out(tmp_path):
    scene = transforms.load(write_transforms(tmp_path, n=17), cfg(), load_images=False)
    assert scene.splits["test"] == [0, 8, 16] and len(scene.splits["train"]) == 14
    assert scene.splits["val"] == []
    assert transforms.load(tmp_path, cfg(llffhold=0), load_images=False).splits["test"] == []


def test_applied_transform_and_scales_are_recorded(tmp_path):
    applied = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0]]  # nerfstudio's
    root = write_transforms(tmp_path, n=4, applied_transform=applied, applied_scale=0.5)
    scene = transforms.load(root, cfg(), load_images=False)
    assert scene.source["applied_transform"] == [*applied, [0.0, 0.0, 0.0, 1.0]]
    assert scene.source["applied_scale"] == 0.5 and scene.source["aabb_scale"] is None
    want = scene.world_from_file @ np.array(scene.source["applied_transform"])
    assert np.allclose(scene.source["world_from_original"], want)
    json.dumps(scene.source)  # JSON values only


def test_frames_are_sorted_by_file_path(tmp_path):
    root = write_transforms(tmp_path, n=5)
    edit(root, lambda m: m["frames"].reverse())
    scene = transforms.load(root, cfg(), load_images=False)
    assert [Path(f).name for f in scene.image_files] == [f"frame_{k:03d}.png" for k in range(5)]
    meta = json.loads((root / "transforms.json").read_text())
    first = meta["frames"][-1]["transform_matrix"]
    assert np.allclose(
        scene.world_from_file @ np.array(first)[:, 3], [*scene.c2w[0, :, 3], 1], atol=1e-6
    )


def test_file_path_without_extension_backslashes_and_the_json_path(tmp_path):
    root = write_transforms(tmp_path, n=3, ext="")
    edit(root, lambda m: m["frames"][1].update(file_path="images\\frame_001"))
    scene = transforms.load(root / "transforms.json", cfg())
    assert scene.images.shape == (3, 6, 8, 3) and scene.image_files[1].endswith("frame_001.png")
    assert transforms.detect(root) and transforms.detect(root / "transforms.json")
    (root / "transforms_train.json").write_text("{}")
    assert not transforms.detect(root)


# ----------------------------------------------------------------------------- factor, images


def test_images_n_folder_is_used_when_complete(tmp_path):
    root = write_transforms(tmp_path, n=4, size=(6, 8), value=200)
    (root / "images_2").mkdir()
    for k in range(3):  # incomplete: frame 3 is resized from the original
        Image.fromarray(np.full((3, 4, 3), 10, np.uint8)).save(root / f"images_2/frame_{k:03d}.png")
    scene = transforms.load(root, cfg(factor=2))
    assert scene.source["image_folder"] == "images_2" and scene.images.shape == (4, 3, 4, 3)
    assert np.allclose(scene.images[:3], 10 / 255) and np.allclose(scene.images[3], 200 / 255)
    assert scene.K[0, 0, 0] == 5.0 and scene.K[0, 0, 2] == pytest.approx(2.1)
    Image.fromarray(np.full((2, 2, 3), 10, np.uint8)).save(root / "images_2/frame_000.png")
    stale = transforms.load(root, cfg(factor=2))  # wrong size: the folder is ignored
    assert stale.source["image_folder"] == "resized in-process" and np.allclose(
        stale.images, 200 / 255
    )


def test_in_process_resize_floors_and_scales_k_by_the_size_ratio(tmp_path):
    scene = transforms.load(write_transforms(tmp_path, n=2, size=(7, 9), value=50), cfg(factor=2))
    assert (scene.height, scene.width) == (3, 4) and np.allclose(scene.images, 50 / 255, atol=1e-6)
    assert scene.K[0, 0, 0] == pytest.approx(10 * 4 / 9) and scene.K[0, 1, 2] == pytest.approx(
        2.9 * 3 / 7
    )


def test_rgba_photos_are_composited(tmp_path):
    root = write_transforms(tmp_path, n=2, size=(2, 2))
    Image.fromarray(np.full((2, 2, 4), (255, 255, 255, 0), np.uint8)).save(
        root / "images/frame_000.png"
    )
    assert np.allclose(transforms.load(root, cfg()).images[0], 0.0)  # auto: black
    assert np.allclose(transforms.load(root, cfg(background="white")).images[0], 1.0)
    scene = transforms.load(root, cfg(background="random"))
    assert np.allclose(scene.alpha[0], 0.0) and np.allclose(scene.alpha[1], 1.0)


def test_missing_frames_error_or_skip(tmp_path):
    root = write_transforms(tmp_path, n=9)
    for k in (2, 5):
        (root / f"images/frame_{k:03d}.png").unlink()
    with pytest.raises(
        DataError, match=r"2 of 9 frames.*frame_002.*frame_005.*--skip-missing"
    ) as error:
        transforms.load(root, cfg(), load_images=False)
    assert "\n" not in str(error.value)
    with pytest.warns(transforms.SkippedFramesWarning, match="skipped 2 frame"):
        scene = transforms.load(root, cfg(skip_missing=True))
    assert scene.num_views == 7 and scene.images.shape[0] == 7
    assert scene.source["skipped_frames"] == ["images/frame_002.png", "images/frame_005.png"]


# ----------------------------------------------------------------------------- bad input

BAD = [
    (lambda m: m.pop("frames"), "'frames' is missing"),
    (lambda m: m.update(frames=[]), "non-empty list"),
    (lambda m: m["frames"][0].pop("file_path"), "missing key.*file_path"),
    (lambda m: m["frames"][0].pop("transform_matrix"), "transform_matrix"),
    (lambda m: m.pop("fl_x"), "fl_x"),
    (lambda m: m["frames"][1].update(transform_matrix=[[1, 0, 0, 0]] * 3), "4x4"),
    (lambda m: m["frames"][1]["transform_matrix"][1].__setitem__(3, float("inf")), "non-finite"),
    (lambda m: m["frames"][1]["transform_matrix"][0].__setitem__(0, 1.5), "orthonormal"),
    (lambda m: [r.__setitem__(0, -r[0]) for r in m["frames"][1]["transform_matrix"][:3]], "mirror"),
    (lambda m: m.update(fl_x=0.0), "positive"),
    (lambda m: m.update(fl_x=1e300), "not a camera"),
    (lambda m: m.update(k1=1e300), "float32"),
    (lambda m: m["frames"][3].update(fl_y=-5), "positive"),
    (lambda m: m.update(w=9), "w/h"),
    (lambda m: m["frames"][2].update(w=16, h=12), "share one image size"),
    (lambda m: m.update(camera_model="KANNALA"), "unknown camera_model"),
    (lambda m: m.update(camera_model="OPENCV_FISHEYE"), "fisheye"),
    (lambda m: m.update(is_fisheye=True), "fisheye"),
    (lambda m: m.update(k5=0.1), "rational"),
    (lambda m: m["frames"][0].update(file_path="../../etc/passwd"), "outside the scene folder"),
    (lambda m: m["frames"][0].update(file_path="/etc/passwd"), "outside the scene folder"),
    (lambda m: m["frames"][1].update(file_path="./" + m["frames"][0]["file_path"]), "duplicate"),
    (lambda m: m["frames"][2].update(file_path=m["frames"][0]["file_path"][:-4]), "duplicate"),
    (lambda m: m.update(applied_transform=[[1, 0]]), "applied_transform"),
    (lambda m: m["frames"][0].update(file_path="images/" + "x" * 300 + ".png"), "no image file"),
]


@pytest.mark.parametrize("change, match", BAD)
def test_bad_input_is_a_one_line_data_error(tmp_path, change, match):
    root = write_transforms(tmp_path, n=4)
    edit(root, change)
    with pytest.raises(DataError, match=match) as error:
        transforms.load(root, cfg())
    text = str(error.value)
    assert "\n" not in text and "transforms.json" in text, text


def test_malformed_json_names_line_and_column(tmp_path):
    root = write_transforms(tmp_path, n=2)
    (root / "transforms.json").write_text('{"fl_x": 10,\n "frames": [}\n')
    with pytest.raises(DataError, match=r"transforms\.json: not valid JSON \(line 2, column 13"):
        transforms.load(root, cfg())


# ----------------------------------------------------------------------------- training frame


def test_fox_orbit_stays_on_the_captured_arc():
    scene = transforms.load(fox_dir(), cfg(), load_images=False)
    azimuth = lambda p: np.degrees(np.arctan2(p[:, 1], p[:, 0]))  # noqa: E731 (fox is z up)
    cams, path = azimuth(scene.c2w[:, :, 3]), azimuth(scene.render_poses[:, :, 3])
    assert cams.min() - 1 <= path.min() and path.max() <= cams.max() + 1
    assert (scene.render_poses[:, 2, 1] > 0.9).all()  # upright


# ----------------------------------------------------------------------------- fuzz


def check_scene(scene) -> None:
    n = scene.num_views
    assert scene.c2w.shape == (n, 3, 4) and np.isfinite(scene.c2w).all()
    assert np.isfinite(scene.render_poses).all() and np.isfinite(scene.K).all()
    assert (scene.K[:, 0, 0] > 0).all() and 0 < scene.near < scene.far
    assert scene.images.shape == (n, scene.height, scene.width, 3)
    assert all(set(scene.splits[s]) <= set(range(n)) for s in ("train", "val", "test"))


@SETTINGS
@given(data=st.data())
def test_fuzz_corrupted_json_raises_only_data_error(data):
    with tempfile.TemporaryDirectory() as folder:
        root = write_transforms(Path(folder), n=3, size=(2, 3), k1=0.01, aabb_scale=4)
        path = root / "transforms.json"
        path.write_text(corrupt(data, json.loads(path.read_text())))
        try:
            scene = transforms.load(root, cfg(factor=data.draw(st.sampled_from([1, 2]))))
        except DataError as exc:
            assert "\n" not in str(exc) and str(exc)
        else:
            check_scene(scene)


@SETTINGS
@given(
    n=st.integers(1, 6),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    offset=st.lists(st.floats(-100, 100), min_size=3, max_size=3),
    seed=st.integers(0, 2**31),
    factor=st.sampled_from([1, 2]),
)
def test_fuzz_random_valid_captures_load(n, scale, offset, seed, factor):
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        root = write_transforms(Path(folder), n=n, size=(4, 5))

        def randomise(meta):
            for frame in meta["frames"]:
                q, r = np.linalg.qr(rng.normal(size=(3, 3)))
                q = q @ np.diag(np.sign(np.diag(r)))
                q[:, 0] *= np.sign(np.linalg.det(q))
                m = np.eye(4)
                m[:3, :3], m[:3, 3] = q, (rng.normal(size=3) + offset) * scale
                frame["transform_matrix"] = m.tolist()

        edit(root, randomise)
        scene = transforms.load(root, cfg(factor=factor))
        check_scene(scene)
        distance = np.linalg.norm(scene.c2w[:, :, 3], axis=1)
        assert distance.mean() == pytest.approx(1.0, abs=1e-4) or n == 1
        assert (np.abs(scene.c2w[:, :, 3]) <= scene.scene_box[1] + 1e-5).all()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            transforms.load(root, cfg(factor=factor), load_images=False)


EXTREME = st.sampled_from([1e-300, 1e-30, 1e-8, 1.0, 1e8, 1e30, 1e300, -1e300, 0.0])


@SETTINGS
@given(
    translations=st.lists(st.tuples(EXTREME, EXTREME, EXTREME), min_size=3, max_size=3),
    focal=EXTREME,
    k1=EXTREME,
    cx=EXTREME,
)
def test_fuzz_extreme_values_load_finite_or_raise_data_error(translations, focal, k1, cx):
    with tempfile.TemporaryDirectory() as folder:
        root = write_transforms(Path(folder), n=3, size=(2, 3), fl_x=focal, k1=k1, cx=cx)

        def extreme(meta):
            for frame, t in zip(meta["frames"], translations):
                for row, value in zip(frame["transform_matrix"][:3], t):
                    row[3] = value

        edit(root, extreme)
        try:
            scene = transforms.load(root, cfg())
        except DataError as exc:
            assert "\n" not in str(exc) and str(exc)
        else:
            check_scene(scene)
            rays = camera_rays(scene.camera(0))
            assert torch.isfinite(rays.directions).all() and torch.isfinite(rays.origins).all()
