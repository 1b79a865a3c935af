"""Blender (NeRF-synthetic) loader: numbers computed by hand from lego's json, compositing and
resize order on tiny RGBA scenes written here, bad input, and hypothesis fuzzing."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nerfcli.config import DataConfig
from nerfcli.data.formats import blender, json_frames
from nerfcli.data.rays import camera_rays
from nerfcli.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LEGO_ANGLE = 0.6911112070083618
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def lego_dir() -> Path:
    path = SHARED_DATA / "lego"
    if not (path / "transforms_train.json").is_file():
        pytest.skip(f"real capture 'lego' not found at {path} (CI and the team have ../shared)")
    return path


def cfg(**kw) -> DataConfig:
    """A data config with Blender's own options (half_res, testskip) in data.blender."""
    own = {key: kw.pop(key) for key in ("half_res", "testskip") if key in kw}
    return DataConfig(**{"factor": 1, "blender": {"testskip": 1, **own}, **kw})


def look_at(position, target=(0.0, 0.0, 0.0)) -> list[list[float]]:
    """A 4x4 OpenGL camera-to-world looking from position at target, z up."""
    position = np.asarray(position, dtype=np.float64)
    back = position - np.asarray(target)
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    m = np.eye(4)
    m[:3, :4] = np.stack([right, up, back, position], 1)
    return m.tolist()


def write_image(path: Path, pixels: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)


def write_blender(
    root: Path,
    counts=(3, 2, 2),
    size=(4, 6),
    angle: float = 0.8,
    pixels=None,
    mode: str | None = None,
) -> Path:
    """A Blender scene: per split `counts` views of size (H, W); RGBA noise unless `pixels`."""
    rng = np.random.default_rng(0)
    for split, n in zip(blender.SPLITS, counts):
        frames = []
        for k in range(n):
            name = f"./{split}/r_{k}"
            img = pixels if pixels is not None else rng.integers(0, 256, (*size, 4), np.uint8)
            write_image(root / f"{split}/r_{k}.png", img, mode)
            theta = 2 * math.pi * (k + 10 * len(frames) + 7 * blender.SPLITS.index(split)) / 29
            pos = [4 * math.cos(theta), 4 * math.sin(theta), 1.0 + 0.1 * k]
            frames.append({"file_path": name, "transform_matrix": look_at(pos)})
        meta = {"camera_angle_x": angle, "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(meta))
    return root


# ----------------------------------------------------------------------------- lego, by hand


def test_lego_focal_splits_and_poses_by_hand():
    root = lego_dir()
    scene = blender.load(root, cfg(), load_images=False)
    assert scene.K[0, 0, 0] == pytest.approx(800 / (2 * math.tan(LEGO_ANGLE / 2)), rel=1e-6)
    assert scene.K[0, 0, 0] == pytest.approx(1111.111, abs=1e-3)
    assert (scene.height, scene.width) == (800, 800) and scene.K[0, 0, 2] == 400.0
    assert [len(scene.splits[s]) for s in blender.SPLITS] == [100, 100, 200]
    assert scene.splits["val"][0] == 100 and scene.splits["test"][0] == 200
    raw = {s: json.loads((root / f"transforms_{s}.json").read_text()) for s in blender.SPLITS}
    for view, (split, k) in {
        0: ("train", 0),
        99: ("train", 99),
        100: ("val", 0),
        399: ("test", 199),
    }.items():
        want = np.array(raw[split]["frames"][k]["transform_matrix"])[:3, :4]
        assert np.allclose(scene.c2w[view], want, atol=1e-7)
    assert (scene.near, scene.far, scene.kind, scene.ndc) == (2.0, 6.0, "object", False)
    assert scene.pixel_center == 0.0 and scene.background == "white"
    assert np.allclose(scene.scene_box, [[-1.5] * 3, [1.5] * 3])
    assert scene.source["split_sizes"] == {"train": 100, "val": 100, "test": 200}


def test_lego_testskip_keeps_every_eighth_val_and_test_view():
    root = lego_dir()
    scene = blender.load(root, cfg(testskip=8), load_images=False)
    assert [len(scene.splits[s]) for s in blender.SPLITS] == [100, 13, 25]
    raw = json.loads((root / "transforms_val.json").read_text())
    assert np.allclose(scene.c2w[101], np.array(raw["frames"][8]["transform_matrix"])[:3, :4])
    for skip in (0, 1):
        assert blender.load(root, cfg(testskip=skip), load_images=False).num_views == 400


def hand_pose_spherical(theta_deg: float, phi_deg: float, radius: float) -> np.ndarray:
    """nerf-pytorch's pose_spherical written out: swap @ rot_theta @ rot_phi @ translate."""
    t, p = math.radians(theta_deg), math.radians(phi_deg)
    translate = np.eye(4)
    translate[2, 3] = radius
    rot_phi = np.array(
        [
            [1, 0, 0, 0],
            [0, math.cos(p), -math.sin(p), 0],
            [0, math.sin(p), math.cos(p), 0],
            [0, 0, 0, 1],
        ]
    )
    rot_theta = np.array(
        [
            [math.cos(t), 0, -math.sin(t), 0],
            [0, 1, 0, 0],
            [math.sin(t), 0, math.cos(t), 0],
            [0, 0, 0, 1],
        ]
    )
    swap = np.array([[-1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    return swap @ rot_theta @ rot_phi @ translate


def test_lego_render_path_is_40_spherical_poses():
    scene = blender.load(lego_dir(), cfg(), load_images=False)
    assert scene.render_poses.shape == (40, 3, 4) and scene.render_path == "spherical"
    assert np.allclose(scene.render_poses[0], hand_pose_spherical(-180, -30, 4)[:3, :4], atol=1e-6)
    assert np.allclose(scene.render_poses[10], hand_pose_spherical(-90, -30, 4)[:3, :4], atol=1e-6)
    radii = np.linalg.norm(scene.render_poses[:, :, 3], axis=1)
    assert np.allclose(radii, 4.0) and np.allclose(
        scene.render_poses[:, 2, 3], 4 * math.sin(math.radians(30))
    )


def test_lego_metadata_load_is_fast_and_decodes_nothing(monkeypatch):
    root = lego_dir()
    calls = []
    monkeypatch.setattr(json_frames, "read_rgba", lambda path: calls.append(path))
    start = time.perf_counter()
    scene = blender.load(root, cfg(), load_images=False)
    assert time.perf_counter() - start < 2.0  # measured 0.04 s for 400 views
    assert scene.images is None and not calls and len(scene.image_files) == 400


def test_lego_half_res_images():
    root = lego_dir()
    scene = blender.load(root, cfg(testskip=100, half_res=True))
    assert scene.images.shape == (103, 400, 400, 3) and scene.images.dtype == np.float32
    assert scene.K[0, 0, 0] == pytest.approx(1111.111 / 2, abs=1e-3) and scene.K[0, 0, 2] == 200.0
    assert scene.images[0, 0, 0].tolist() == [1.0, 1.0, 1.0]  # transparent corner on white
    rgba = np.asarray(Image.open(root / "train/r_0.png")).astype(np.float32) / 255.0
    half = rgba.reshape(400, 2, 400, 2, 4).mean((1, 3))
    want = half[..., :3] * half[..., 3:] + (1 - half[..., 3:])
    assert np.abs(scene.images[0] - want).max() < 1e-5


# ----------------------------------------------------------------------------- tiny scenes


def test_white_compositing_of_a_known_pixel(tmp_path):
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[0, 1] = (200, 100, 50, 128)
    pixels[1, 0] = (10, 20, 30, 255)
    root = write_blender(tmp_path, counts=(1, 0, 0), size=(2, 2), pixels=pixels)
    scene = blender.load(root, cfg())
    a = 128 / 255
    want = [c / 255 * a + (1 - a) for c in (200, 100, 50)]
    assert np.allclose(scene.images[0, 0, 1], want, atol=1e-6)
    assert np.allclose(scene.images[0, 1, 0], [10 / 255, 20 / 255, 30 / 255], atol=1e-6)
    assert np.allclose(scene.images[0, 0, 0], 1.0)  # fully transparent: white
    black = blender.load(root, cfg(background="black"))
    assert np.allclose(black.images[0, 0, 1], [c / 255 * a for c in (200, 100, 50)], atol=1e-6)
    assert black.background == "black" and black.alpha is None


def test_random_background_keeps_alpha_and_composites_on_black(tmp_path):
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[0, 1] = (200, 100, 50, 128)
    root = write_blender(tmp_path, counts=(2, 1, 0), size=(2, 2), pixels=pixels)
    scene = blender.load(root, cfg(background="random"))
    assert scene.background == "random" and scene.alpha.shape == (3, 2, 2)
    assert scene.alpha[0, 0, 1] == pytest.approx(128 / 255)
    assert scene.alpha[0, 0, 0] == 0.0
    assert np.allclose(
        scene.images[0, 0, 1], [c / 255 * 128 / 255 for c in (200, 100, 50)], atol=1e-6
    )


def test_half_res_resizes_before_compositing(tmp_path):
    # a 2x2 block of one opaque black pixel and three transparent white ones:
    # resize first -> rgb 0.75, a 0.25 -> 0.75 * 0.25 + 0.75 = 0.9375; composite first -> 0.75
    pixels = np.zeros((4, 4, 4), np.uint8)
    pixels[..., :3] = 255
    pixels[0::2, 0::2] = (0, 0, 0, 255)
    root = write_blender(tmp_path, counts=(1, 0, 0), size=(4, 4), pixels=pixels)
    scene = blender.load(root, cfg(half_res=True))
    assert (scene.height, scene.width) == (2, 2) and scene.images.shape == (1, 2, 2, 3)
    assert np.allclose(scene.images[0], 0.9375)
    full = blender.load(root, cfg())
    assert np.allclose(full.images[0].reshape(2, 2, 2, 2, 3).mean((1, 3)), 0.75)  # the other order
    assert scene.K[0, 0, 0] == pytest.approx(full.K[0, 0, 0] / 2)
    assert np.allclose(blender.load(root, cfg(factor=2)).images, scene.images)


def test_odd_sizes_floor_and_area_weights(tmp_path):
    root = write_blender(
        tmp_path, counts=(1, 0, 0), size=(5, 7), pixels=np.full((5, 7, 4), 255, np.uint8)
    )
    scene = blender.load(root, cfg(half_res=True))
    assert (scene.height, scene.width) == (2, 3) and np.allclose(scene.images, 1.0)
    assert scene.K[0, 0, 2] == 1.5  # principal point at the centre of the loaded image


def test_views_numbered_train_val_test_and_focal(tmp_path):
    root = write_blender(tmp_path, counts=(3, 2, 4), angle=0.9)
    scene = blender.load(root, cfg(), load_images=False)
    assert scene.splits == {"train": [0, 1, 2], "val": [3, 4], "test": [5, 6, 7, 8]}
    test_meta = json.loads((root / "transforms_test.json").read_text())
    assert np.allclose(scene.c2w[5], np.array(test_meta["frames"][0]["transform_matrix"])[:3, :4])
    assert scene.K[0, 0, 0] == pytest.approx(0.5 * 6 / math.tan(0.45))
    assert scene.image_files[3].endswith("val/r_0.png")
    skipped = blender.load(root, cfg(testskip=3), load_images=False).splits  # val 0; test 0, 3
    assert skipped == {"train": [0, 1, 2], "val": [3], "test": [4, 5]}


def test_principal_ray_is_minus_z(tmp_path):
    root = write_blender(tmp_path, counts=(1, 0, 0), size=(4, 6))
    scene = blender.load(root, cfg(), load_images=False)
    rays = camera_rays(scene.camera(0))
    direction = rays.directions[2, 3].numpy()  # pixel (3, 2) = (W/2, H/2) with pixel_center 0
    assert np.allclose(direction / np.linalg.norm(direction), -scene.c2w[0][:, 2], atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "P"])
def test_grey_rgb_and_palette_images_are_promoted(tmp_path, mode):
    shape = {"L": (3, 3), "LA": (3, 3, 2), "RGB": (3, 3, 3), "P": (3, 3)}[mode]
    pixels = np.full(shape, 90, np.uint8)
    root = write_blender(tmp_path, counts=(1, 0, 0), size=(3, 3), pixels=pixels, mode=mode)
    scene = blender.load(root, cfg())
    assert scene.images.shape == (1, 3, 3, 3) and np.isfinite(scene.images).all()
    if mode in ("L", "RGB"):  # no alpha: used as is, whatever the background
        assert np.allclose(scene.images, 90 / 255)


def test_cmyk_image_is_refused_naming_the_file(tmp_path):
    root = write_blender(tmp_path, counts=(1, 0, 0), size=(3, 3))
    Image.new("CMYK", (3, 3)).save(root / "train/r_0.png", format="JPEG")
    with pytest.raises(DataError, match=r"r_0\.png.*CMYK"):
        blender.load(root, cfg())


def test_missing_val_and_test_files_give_empty_splits(tmp_path):
    root = write_blender(tmp_path, counts=(2, 1, 1))
    (root / "transforms_val.json").unlink()
    (root / "transforms_test.json").unlink()
    scene = blender.load(root / "transforms_train.json", cfg(), load_images=False)
    assert scene.splits == {"train": [0, 1], "val": [], "test": []}
    assert blender.detect(root) and blender.detect(root / "transforms_train.json")
    assert not blender.detect(tmp_path / "nowhere")


def one_line(error: pytest.ExceptionInfo, name: str) -> None:
    text = str(error.value)
    assert "\n" not in text and name in text, text


def mutate_train(root: Path, change) -> None:
    path = root / "transforms_train.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: m.pop("camera_angle_x"), "camera_angle_x"),
        (lambda m: m.update(camera_angle_x=-1), "positive"),
        (lambda m: m.update(camera_angle_x=1e-300), "gives focal"),
        (lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(3, 1e300), "float32"),
        (lambda m: m.update(frames=[]), "non-empty list"),
        (lambda m: m["frames"][1].pop("transform_matrix"), "transform_matrix"),
        (lambda m: m["frames"][0].update(transform_matrix=[[1, 0, 0], [0, 1, 0]]), "4x4"),
        (
            lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(3, float("nan")),
            "non-finite",
        ),
        (lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(0, 2.0), "orthonormal"),
        (lambda m: m["frames"][1].update(file_path=m["frames"][0]["file_path"]), "duplicate"),
        (lambda m: m["frames"][0].update(file_path="../../etc/passwd"), "outside the scene folder"),
        (lambda m: m["frames"][0].update(file_path="./train/nope"), "not found"),
    ],
)
def test_bad_input_is_a_one_line_data_error(tmp_path, change, match):
    root = write_blender(tmp_path)
    mutate_train(root, change)
    with pytest.raises(DataError, match=match) as error:
        blender.load(root, cfg())
    one_line(error, "transforms_train.json")


def test_malformed_json_names_line_and_column(tmp_path):
    root = write_blender(tmp_path)
    (root / "transforms_val.json").write_text('{\n  "camera_angle_x": 0.8,\n  "frames": [,]\n}')
    with pytest.raises(DataError, match=r"line 3, column 14") as error:
        blender.load(root, cfg())
    one_line(error, "transforms_val.json")


def test_views_of_different_sizes_are_refused(tmp_path):
    root = write_blender(tmp_path, counts=(2, 0, 0), size=(4, 4))
    write_image(root / "train/r_1.png", np.zeros((5, 4, 4), np.uint8))
    with pytest.raises(DataError, match="share one size") as error:
        blender.load(root, cfg())
    one_line(error, "r_1.png")


# ----------------------------------------------------------------------------- fuzz

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def corrupt(data: st.DataObject, meta: dict) -> str:
    """The json text of meta after one random corruption (a value replaced, a key dropped, the
    text truncated, or a byte changed)."""
    kind = data.draw(st.sampled_from(["value", "drop", "truncate", "byte"]))
    if kind in ("value", "drop"):
        node, key = meta, None
        while True:  # walk down to a random container slot
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = data.draw(st.sampled_from(keys))
            child = node[key]
            if not isinstance(child, (dict, list)) or data.draw(st.booleans()):
                break
            node = child
        if key is not None:
            if kind == "drop" and isinstance(node, dict):
                del node[key]
            else:
                node[key] = data.draw(JSON_VALUES)
        return json.dumps(meta)
    text = json.dumps(meta)
    cut = data.draw(st.integers(0, len(text) - 1))
    if kind == "truncate":
        return text[:cut]
    return text[:cut] + data.draw(st.sampled_from(list('{}[],:"0e-.x\\ '))) + text[cut + 1 :]


def assert_loads_or_data_error(root: Path, **kw) -> None:
    try:
        scene = blender.load(root, cfg(**kw))
    except DataError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    n = scene.num_views
    assert scene.c2w.shape == (n, 3, 4) and np.isfinite(scene.c2w).all()
    assert np.isfinite(scene.K).all() and (scene.K[:, 0, 0] > 0).all()
    assert scene.images.shape == (n, scene.height, scene.width, 3)
    assert 0.0 <= scene.images.min() and scene.images.max() <= 1.0


@SETTINGS
@given(data=st.data(), split=st.sampled_from(blender.SPLITS))
def test_fuzz_corrupted_json_raises_only_data_error(data, split):
    with tempfile.TemporaryDirectory() as folder:
        root = write_blender(Path(folder), counts=(2, 1, 1), size=(2, 2))
        path = root / f"transforms_{split}.json"
        path.write_text(corrupt(data, json.loads(path.read_text())))
        assert_loads_or_data_error(root, half_res=data.draw(st.booleans()))


@SETTINGS
@given(
    counts=st.tuples(st.integers(1, 3), st.integers(0, 2), st.integers(0, 2)),
    size=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    angle=st.floats(0.05, 3.0),
    testskip=st.integers(0, 3),
    seed=st.integers(0, 2**31),
)
def test_fuzz_random_valid_scenes_load(counts, size, angle, testskip, seed):
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        root = write_blender(Path(folder), counts=counts, size=size, angle=angle)
        for split in blender.SPLITS:  # random proper rotations and translations
            path = root / f"transforms_{split}.json"
            meta = json.loads(path.read_text())
            for frame in meta["frames"]:
                q, r = np.linalg.qr(rng.normal(size=(3, 3)))
                q = (
                    q
                    * np.sign(np.diag(r))
                    * (1 if np.linalg.det(q * np.sign(np.diag(r))) > 0 else -1)
                )
                m = np.eye(4)
                m[:3, :3], m[:3, 3] = q, rng.normal(size=3) * 10
                frame["transform_matrix"] = m.tolist()
            path.write_text(json.dumps(meta))
        scene = blender.load(root, cfg(testskip=testskip))
        skip = max(testskip, 1)
        want = [counts[0], len(range(0, counts[1], skip)), len(range(0, counts[2], skip))]
        assert [len(scene.splits[s]) for s in blender.SPLITS] == want
        assert scene.K[0, 0, 0] == pytest.approx(0.5 * size[1] / math.tan(0.5 * angle), rel=1e-5)
        first = json.loads((root / "transforms_train.json").read_text())["frames"][0]
        assert np.allclose(scene.c2w[0], np.array(first["transform_matrix"])[:3, :4], atol=1e-6)


def test_the_factor_message_claims_no_size_it_did_not_read(tmp_path):
    """The auto factor's reason named lego's 400 x 400 as what --half-res gives, for any
    Blender scene."""
    from nerfcli.config import DataConfig
    from nerfcli.data.formats.blender import plan_frame

    root = write_blender(tmp_path / "s")
    reason = plan_frame(root, DataConfig(format="blender")).choices["factor"].reason
    assert "400" not in reason and "--half-res" in reason
