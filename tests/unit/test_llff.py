"""The LLFF loader: conventions with closed-form cases, fern's numbers, and parsing properties."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerfcli.data.cameras import poses_avg, recenter_poses, spiral_path
from nerfcli.data.formats.llff import (
    holdout_split,
    load_llff_data,
    scene_from_poses_bounds,
)
from nerfcli.data.formats.llff_frame import stored_to_training_axes
from nerfcli.data.formats.poses_bounds import PosesBounds, find_pose_problems, read_poses_bounds
from nerfcli.errors import DataError
from tests.conftest import look_at_stored, write_llff

HWF = np.array([[24.0], [32.0], [30.0]])  # height, width, focal of the tiny captures


def rotation_from_quaternion(q: np.ndarray) -> np.ndarray:
    """A proper rotation [3, 3] (det +1) from any non-zero quaternion (w, x, y, z)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def poses_row(stored_c2w: np.ndarray, hwf=HWF, near: float = 2.0, far: float = 8.0) -> np.ndarray:
    """One row of poses_bounds.npy from a stored-convention [3, 4] pose."""
    return np.concatenate([np.concatenate([stored_c2w, hwf], 1).ravel(), [near, far]])


def save(path: Path, arr) -> Path:
    np.save(path, arr)
    return path


def tiny_array(n: int = 6) -> np.ndarray:
    """The poses of conftest's tiny capture as an [n, 17] array."""
    rows = []
    for k in range(n):
        pos = np.array([0.3 * np.cos(k), 0.2 * np.sin(k), 4.0])
        rows.append(poses_row(look_at_stored(pos, np.zeros(3))))
    return np.array(rows)


# ----------------------------------------------------------------------------- conventions


def test_axis_reorder_down_right_back_to_right_up_back():
    # A camera whose right, up, back are the world x, y, z is stored as [down, right, back].
    right, up, back = np.eye(3)
    position = np.array([1.0, 2.0, 3.0])
    stored = np.stack([-up, right, back, position], 1)[None]  # [1, 3, 4]
    hwf = np.broadcast_to(HWF, (1, 3, 1))
    c2w = stored_to_training_axes(np.concatenate([stored, hwf], 2))
    np.testing.assert_array_equal(c2w[0], np.concatenate([np.eye(3), position[:, None]], 1))
    # A camera turned 90 degrees about y: right = -z, back = +x.
    stored = np.stack([-up, -back, right, position], 1)[None]
    c2w = stored_to_training_axes(np.concatenate([stored, hwf], 2))
    np.testing.assert_array_equal(c2w[0, :, 0], -back)  # right
    np.testing.assert_array_equal(c2w[0, :, 1], up)  # up = -down
    np.testing.assert_array_equal(c2w[0, :, 2], right)  # back


def test_bd_factor_rescale_makes_smallest_near_one_over_bd_factor(tmp_path):
    root = write_llff(tmp_path / "s", with_images=False)
    pb = read_poses_bounds(root)
    scene = load_llff_data(root, recenter=False, load_imgs=False, bd_factor=0.75)
    scale = 1.0 / (pb.bounds.min() * 0.75)
    assert scene.scale == pytest.approx(scale)
    assert scene.bounds.min() == pytest.approx(1.0 / 0.75)
    np.testing.assert_allclose(scene.bounds, pb.bounds * scale, rtol=1e-6)
    # Translations scale with the bounds; rotations do not change.
    expected = stored_to_training_axes(pb.poses)
    np.testing.assert_allclose(scene.c2w[:, :, 3], expected[:, :, 3] * scale, rtol=1e-5)
    np.testing.assert_allclose(scene.c2w[:, :, :3], expected[:, :, :3], atol=1e-6)
    unscaled = load_llff_data(root, recenter=False, load_imgs=False, bd_factor=None)
    assert unscaled.scale == 1.0
    np.testing.assert_allclose(unscaled.bounds, pb.bounds, rtol=1e-6)


def test_recentering_makes_the_average_pose_the_identity():
    rng = np.random.default_rng(1)
    c2w = np.stack(
        [
            np.concatenate(
                [rotation_from_quaternion(rng.normal(size=4)), rng.normal(size=(3, 1))], 1
            )
            for _ in range(7)
        ]
    )
    assert not np.allclose(poses_avg(c2w), np.eye(3, 4))
    recentered, transform = recenter_poses(c2w)
    np.testing.assert_allclose(poses_avg(recentered), np.eye(3, 4), atol=1e-9)
    # A rigid transform: distances between cameras and relative rotations are unchanged.
    distances = np.linalg.norm(c2w[:, None, :, 3] - c2w[None, :, :, 3], axis=-1)
    moved = np.linalg.norm(recentered[:, None, :, 3] - recentered[None, :, :, 3], axis=-1)
    np.testing.assert_allclose(moved, distances, atol=1e-9)
    np.testing.assert_allclose(transform[3], [0, 0, 0, 1])


def test_scene_is_recentered(tiny_llff):
    scene = load_llff_data(tiny_llff, load_imgs=False)
    np.testing.assert_allclose(poses_avg(scene.c2w), np.eye(3, 4), atol=1e-5)


@pytest.mark.parametrize("frames", [1, 7, 120])
def test_spiral_has_the_frame_count_and_looks_at_the_focus_depth(frames):
    rng = np.random.default_rng(2)
    c2w = np.tile(np.eye(3, 4), (5, 1, 1))
    c2w[:, :, 3] = rng.normal(scale=0.2, size=(5, 3))
    bounds = np.array([[1.5, 6.0], [2.0, 9.0], [1.8, 7.0], [2.2, 8.0], [3.0, 10.0]])
    path, focus = spiral_path(c2w, bounds, frames=frames)
    assert path.shape == (frames, 3, 4)
    close, far = 1.5 * 0.9, 10.0 * 5.0
    assert focus == pytest.approx(1.0 / (0.25 / close + 0.75 / far))
    # Every frame's optical axis (-z) passes through the point at the focus depth in front of
    # the average camera.
    avg = poses_avg(c2w)
    target = avg[:, :3] @ np.array([0.0, 0.0, -focus]) + avg[:, 3]  # [3]
    for pose in path:
        to_target = target - pose[:, 3]
        np.testing.assert_allclose(to_target / np.linalg.norm(to_target), -pose[:, 2], atol=1e-9)
        np.testing.assert_allclose(pose[:, :3].T @ pose[:, :3], np.eye(3), atol=1e-9)


def test_every_eighth_view_is_held_out():
    train, test = holdout_split(20, 8)
    assert test == [0, 8, 16]
    assert train == [i for i in range(20) if i % 8]
    assert holdout_split(5, 0) == ([0, 1, 2, 3, 4], [])
    assert holdout_split(1, 8) == ([0], [0])  # a single view still trains


def test_spherify_puts_cameras_at_unit_rms_radius(tmp_path):
    # Cameras on a ring around the origin, all looking at it.
    rows = []
    for k in range(12):
        angle = 2 * np.pi * k / 12
        position = np.array([3 * np.cos(angle), 0.5, 3 * np.sin(angle)])
        rows.append(poses_row(look_at_stored(position, np.zeros(3)), near=1.0, far=6.0))
    path = save(tmp_path / "poses_bounds.npy", np.array(rows))
    scene = load_llff_data(path, spherify=True, load_imgs=False, render_frames=30)
    radius = np.sqrt(np.mean(np.sum(scene.c2w[:, :, 3] ** 2, -1)))
    assert radius == pytest.approx(1.0, abs=1e-5)
    assert scene.render_poses.shape == (30, 3, 4)
    assert scene.source["focus_depth"] is None and scene.render_path == "circle"
    # The circle path looks at the origin: -z points from each frame to the centre.
    for pose in scene.render_poses:
        np.testing.assert_allclose(-pose[:, 2], -pose[:, 3] / np.linalg.norm(pose[:, 3]), atol=1e-5)


def test_fern_numbers(fern_dir):
    pb = read_poses_bounds(fern_dir / "poses_bounds.npy")
    assert (pb.num_views, pb.height, pb.width) == (20, 3024, 4032)
    assert pb.focal == pytest.approx(3260.526, abs=1e-3)
    scene = load_llff_data(fern_dir, factor=8, load_imgs=False)
    assert (scene.height, scene.width) == (378, 504)
    np.testing.assert_allclose(scene.K[:, 0, 0], 3260.526 / 8, atol=1e-3)  # every view
    assert scene.i_test == [0, 8, 16]
    assert scene.bounds.min() == pytest.approx(1 / 0.75, rel=1e-6)
    assert scene.render_poses.shape == (120, 3, 4)
    np.testing.assert_allclose(poses_avg(scene.c2w), np.eye(3, 4), atol=1e-5)
    assert (scene.near, scene.far) == (0.0, 1.0) and scene.kind == "forward" and scene.ndc
    world = load_llff_data(fern_dir, factor=8, load_imgs=False, ndc=False)
    assert (world.near, world.far) == pytest.approx((0.9 * 4 / 3, scene.bounds.max()))


def test_fern_images_at_factor_8_come_from_images_8(fern_dir):
    scene = load_llff_data(fern_dir, factor=8)
    assert scene.images.shape == (20, 378, 504, 3)
    assert scene.images.dtype == np.float32
    assert 0.0 <= scene.images.min() and scene.images.max() <= 1.0
    assert Path(scene.image_files[0]).parent.name == "images_8"


def test_images_are_resized_from_images_folder(tmp_path):
    root = write_llff(tmp_path / "s", height=24, width=32)
    scene = load_llff_data(root, factor=4)
    assert scene.images.shape == (6, 6, 8, 3)
    assert (scene.height, scene.width, scene.K[0, 0, 0]) == (6, 8, 30.0 / 4)
    assert sorted(p.name for p in (root / "images_4").iterdir()) == [
        f"img{k:03d}.png" for k in range(6)
    ]  # cached for the next load
    again = load_llff_data(root, factor=4)
    assert Path(again.image_files[0]).parent.name == "images_4"
    np.testing.assert_allclose(again.images, scene.images, atol=0.5 / 255)


def test_read_only_scene_folder_is_never_written(tmp_path):
    """No resize cache in a folder without write permission, even as root (which could)."""
    root = write_llff(tmp_path / "s", height=24, width=32)
    before = sorted(p.name for p in root.iterdir())
    root.chmod(0o555)
    try:
        scene = load_llff_data(root, factor=4)
    finally:
        root.chmod(0o755)
    assert scene.images.shape == (6, 6, 8, 3)
    assert sorted(p.name for p in root.iterdir()) == before


def test_image_count_mismatch_is_a_data_error(tiny_llff):
    sorted((tiny_llff / "images").iterdir())[0].unlink()
    with pytest.raises(DataError, match="5 images but poses_bounds.npy has 6 poses"):
        load_llff_data(tiny_llff, factor=1)


def test_corrupt_image_is_a_data_error(tiny_llff):
    bad = sorted((tiny_llff / "images").iterdir())[2]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=bad.name):
        load_llff_data(tiny_llff, factor=1)


def test_degenerate_average_pose_is_a_data_error(tmp_path):
    # Two cameras facing each other: their back axes cancel, so there is no average direction.
    rows = [
        poses_row(look_at_stored(np.array([0.0, 0.0, z]), np.zeros(3)), near=1.0, far=3.0)
        for z in (2.0, -2.0)
    ]
    path = save(tmp_path / "poses_bounds.npy", np.array(rows))
    with pytest.raises(DataError, match="cannot bring the poses into the training frame"):
        load_llff_data(path, load_imgs=False)


def test_spherify_overflowing_float32_is_a_data_error(tmp_path):
    """Found by the fuzz suite: a one-view capture with bounds 1e-8 whose spherify scale is
    ~1e38 gave float64 bounds that became inf when stored as float32."""
    row = np.array(
        [0.0, 0.970142500, 0.242535625, 1e-30, 1.0, -1.0, 0.0, 0.0, 0.0, 32.0]
        + [-0.0, -0.242535625, 0.970142500, 4e-30, 1.0, 1e-8, 1e-8 * (1 + 1e-9)]
    )  # (focal 1: a focal of 1e-300, as found, is now refused first: 0 in float32)
    path = save(tmp_path / "poses_bounds.npy", row[None])
    with pytest.raises(DataError, match="cannot bring the poses into the training frame"):
        load_llff_data(path, factor=1, spherify=True, load_imgs=False)


# ----------------------------------------------------------------------------- parsing


def test_a_focal_that_is_zero_in_float32_is_a_data_error(tmp_path):
    """Found by the fuzz suite: focal 1e-300 passed the float64 check, then became 0 in the
    Scene's float32 intrinsics."""
    row = np.array(
        [0.0, 0.970142500, 0.242535625, 1e-30, 1.0, -1.0, 0.0, 0.0, 0.0, 32.0]
        + [-0.0, -0.242535625, 0.970142500, 4e-30, 1e-300, 1.0, 4.0]
    )
    path = save(tmp_path / "poses_bounds.npy", row[None])
    with pytest.raises(DataError, match="focal length 1e-300 must be a positive float32"):
        load_llff_data(path, factor=1, load_imgs=False)


def test_folder_or_file_both_parse(tiny_llff):
    a = read_poses_bounds(tiny_llff)
    b = read_poses_bounds(tiny_llff / "poses_bounds.npy")
    np.testing.assert_array_equal(a.poses, b.poses)
    assert (a.height, a.width, a.focal) == (24, 32, 30.0)


@pytest.mark.parametrize(
    "mutate, check, pattern",
    [
        (lambda a: a.__setitem__((2, 3), np.nan), "finite", "view 2 has non-finite"),
        (lambda a: a.__setitem__((1, 0), 2.0), "rotation", "not orthonormal"),
        (lambda a: a.__setitem__((3, slice(0, 15, 5)), -a[3, 0:15:5]), "rotation", "mirror"),
        (lambda a: a.__setitem__((4, 15), 0.0), "bounds", "near=0"),
        (lambda a: a.__setitem__((4, 15), -1.0), "bounds", "near=-1"),
        (lambda a: a.__setitem__((0, 16), 1.0), "bounds", "near=2, far=1"),
        (lambda a: a.__setitem__((0, 4), 0.0), "intrinsics", "height 0"),
        (lambda a: a.__setitem__((0, 9), 31.5), "intrinsics", "width 31.5"),
        (lambda a: a.__setitem__((0, 14), -3.0), "intrinsics", "focal length -3"),
        (lambda a: a.__setitem__((2, 14), 60.0), "intrinsics", "view 2 has height, width, focal"),
    ],
)
def test_each_content_problem_is_found_and_named(tmp_path, mutate, check, pattern):
    arr = tiny_array()
    mutate(arr)
    problems = find_pose_problems(arr)
    assert [p.check for p in problems] == [check]
    assert pattern in problems[0].message
    path = save(tmp_path / "poses_bounds.npy", arr)
    with pytest.raises(DataError, match=str(path).replace(".", r"\.")):
        read_poses_bounds(path)


def test_all_bad_views_are_listed():
    arr = tiny_array()
    arr[[1, 4], 15] = -1.0
    arr[2, 5] = np.inf
    problems = {p.check: p for p in find_pose_problems(arr)}
    assert problems["bounds"].views == [1, 4]
    assert problems["finite"].views == [2]


def test_overflowing_rotation_is_rejected():
    # Squares overflow to inf and cross terms to NaN: must still count as not orthonormal.
    arr = tiny_array()
    arr[0, [0, 1, 5, 6]] = [1e200, -1e200, 1e200, 1e200]
    assert [p.check for p in find_pose_problems(arr)] == ["rotation"]


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"", "not a NumPy .npy file"),
        (b"hello, I am a text file\n", "not a NumPy .npy file"),
        (None, "expected an N x 17"),  # 1-D array, written below
    ],
)
def test_unparseable_files(tmp_path, content, pattern):
    path = tmp_path / "poses_bounds.npy"
    if content is None:
        np.save(path, np.arange(17.0))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=pattern):
        read_poses_bounds(path)


def test_npz_and_pickles_are_rejected(tmp_path):
    path = tmp_path / "poses.npz"
    np.savez(path, poses=tiny_array())
    with pytest.raises(DataError, match="not a NumPy .npy file"):
        read_poses_bounds(path)
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="dtype object"):
        read_poses_bounds(path)


def test_missing_path_and_folder_without_poses(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_poses_bounds(tmp_path / "nope")
    with pytest.raises(DataError, match="no poses_bounds.npy in this folder"):
        read_poses_bounds(tmp_path)


def test_lying_header_does_not_allocate(tmp_path):
    # A header promising a billion rows over 17 rows of data: rejected before any allocation.
    buffer = io.BytesIO()
    np.save(buffer, tiny_array())
    raw = buffer.getvalue().replace(b"(6, 17)", b"(999999999, 17)")
    path = tmp_path / "poses_bounds.npy"
    path.write_bytes(raw)
    with pytest.raises(DataError, match="truncated"):
        read_poses_bounds(path)


# ----------------------------------------------------------------------------- properties

quaternions = st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1
)


@st.composite
def valid_arrays(draw) -> np.ndarray:
    n = draw(st.integers(1, 10))
    height = draw(st.integers(1, 5000))
    width = draw(st.integers(1, 5000))
    focal = draw(st.floats(1.0, 1e4))
    rows = []
    for _ in range(n):
        rotation = rotation_from_quaternion(np.array(draw(quaternions)))
        position = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3)))
        near = draw(st.floats(1e-3, 1e3))
        far = near * (1.0 + draw(st.floats(1e-2, 1e3)))
        hwf = np.array([[height], [width], [focal]], dtype=np.float64)
        rows.append(poses_row(np.concatenate([rotation, position[:, None]], 1), hwf, near, far))
    return np.array(rows)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(arr=valid_arrays(), dtype=st.sampled_from([np.float64, np.float32]))
def test_random_valid_arrays_parse(tmp_path, arr, dtype):
    stored = arr.astype(dtype)
    pb = read_poses_bounds(save(tmp_path / "poses_bounds.npy", stored))
    assert pb.num_views == len(arr)
    np.testing.assert_array_equal(pb.poses.reshape(len(arr), 15), stored[:, :15])
    np.testing.assert_array_equal(pb.bounds, stored[:, 15:])
    assert (pb.height, pb.width) == (round(arr[0, 4]), round(arr[0, 9]))


def _corrupt_array(data, arr: np.ndarray) -> np.ndarray:
    """A copy of arr with one content corruption that must be rejected."""
    arr = arr.copy()
    n = len(arr)
    view = data.draw(st.integers(0, n - 1))
    kind = data.draw(
        st.sampled_from(
            ["nonfinite", "near", "far", "scale_column", "height", "focal", "hwf_differs"]
        )
    )
    if kind == "nonfinite":
        arr[view, data.draw(st.integers(0, 16))] = data.draw(
            st.sampled_from([np.nan, np.inf, -np.inf])
        )
    elif kind == "near":
        arr[view, 15] = data.draw(st.floats(-1e6, 0.0))
    elif kind == "far":
        arr[view, 16] = arr[view, 15] * data.draw(st.floats(0.0, 1.0))
    elif kind == "scale_column":
        column = data.draw(st.integers(0, 2))
        factor = data.draw(st.one_of(st.floats(-10, 0.98), st.floats(1.02, 10)))
        arr[view, column:15:5] *= factor
    elif kind == "height":
        arr[0, 4] = data.draw(st.one_of(st.floats(-1e4, 0.49), st.floats(1e5 + 1, 1e30)))
    elif kind == "focal":
        arr[0, 14] = data.draw(st.floats(-1e4, 0.0))
    else:
        if n == 1:
            arr[0, 14] = -arr[0, 14]
        else:
            arr[data.draw(st.integers(1, n - 1)), 14] *= 2.0
    return arr


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(arr=valid_arrays(), data=st.data())
def test_random_corruptions_raise_data_error(tmp_path, arr, data):
    path = tmp_path / "poses_bounds.npy"
    kind = data.draw(st.sampled_from(["content", "truncate", "garbage", "shape", "dtype", "flip"]))
    buffer = io.BytesIO()
    np.save(buffer, arr)
    raw = buffer.getvalue()
    must_fail = True
    if kind == "content":
        np.save(path, _corrupt_array(data, arr))
    elif kind == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    elif kind == "garbage":
        path.write_bytes(data.draw(st.binary(max_size=400)))
    elif kind == "shape":
        shape = data.draw(
            st.sampled_from([(arr.size,), (len(arr), 17, 1), (arr.size // 17 * 17 // 15, 15)])
        )
        np.save(path, arr.ravel()[: int(np.prod(shape))].reshape(shape))
    elif kind == "dtype":
        kind_of_dtype = data.draw(st.sampled_from(["bool", "complex", "str"]))
        np.save(path, arr.astype(kind_of_dtype))
    else:
        # Random byte flips may hit a harmless bit; then the file must still parse cleanly.
        flipped = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4))):
            flipped[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        path.write_bytes(bytes(flipped))
        must_fail = False
    try:
        pb = read_poses_bounds(path)
    except DataError as exc:
        assert str(path) in str(exc)
        assert "\n" not in str(exc)
        return
    assert not must_fail, f"{kind} corruption was accepted"
    assert isinstance(pb, PosesBounds)
    assert find_pose_problems(np.concatenate([pb.poses.reshape(-1, 15), pb.bounds], 1)) == []


def test_scene_from_poses_bounds_matches_load_scene(tiny_llff):
    pb = read_poses_bounds(tiny_llff)
    a = scene_from_poses_bounds(pb, factor=2, load_imgs=False)
    b = load_llff_data(tiny_llff, factor=2, load_imgs=False)
    np.testing.assert_array_equal(a.c2w, b.c2w)
    np.testing.assert_array_equal(a.render_poses, b.render_poses)
