"""Camera maths: intrinsics, downscaled cameras, Blender's spherical path, interpolation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.data.cameras import (
    Camera,
    interpolate_path,
    intrinsics,
    pose_spherical,
    quaternion_from_rotation,
    rotation_from_quaternion,
    spherical_path,
)


def test_downscaled_camera_scales_size_and_intrinsics():
    camera = Camera(378, 504, intrinsics(378, 504, 400.0), np.eye(3, 4), True, 0.0, 1.0)
    half = camera.downscaled(4)
    assert (half.height, half.width) == (94, 126)
    np.testing.assert_allclose(half.K, [[100, 0, 63], [0, 100, 47.25], [0, 0, 1]])
    assert camera.downscaled(1) is camera


def test_spherical_path_is_on_a_sphere_looking_at_the_origin():
    path = spherical_path(40)
    assert path.shape == (40, 3, 4)
    np.testing.assert_allclose(np.linalg.norm(path[:, :, 3], axis=-1), 4.0, atol=1e-12)
    # the camera looks along -z (its back axis is +z): -back points at the origin
    looking = -path[:, :, 2]
    np.testing.assert_allclose(looking, -path[:, :, 3] / 4.0, atol=1e-12)
    # elevation -30 degrees: the cameras are above the object, z = 4 sin 30
    np.testing.assert_allclose(path[:, 2, 3], 2.0, atol=1e-12)
    np.testing.assert_allclose(path[0], pose_spherical(-180.0, -30.0, 4.0)[:3], atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1))
def test_quaternion_round_trip(q):
    q = np.asarray(q) / np.linalg.norm(q)
    rotation = rotation_from_quaternion(q)
    np.testing.assert_allclose(
        rotation_from_quaternion(quaternion_from_rotation(rotation)), rotation, atol=1e-9
    )


def test_interpolate_path_passes_through_the_cameras_in_order():
    a = np.concatenate([np.eye(3), [[0.0], [0.0], [0.0]]], 1)
    turn = rotation_from_quaternion(
        np.array([np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0])
    )  # 90 deg about y
    b = np.concatenate([turn, [[2.0], [0.0], [0.0]]], 1)
    path = interpolate_path(np.stack([a, b]), 3)
    np.testing.assert_allclose(path[0], a, atol=1e-12)
    np.testing.assert_allclose(path[-1], b, atol=1e-12)
    np.testing.assert_allclose(path[1, :, 3], [1.0, 0.0, 0.0])  # halfway, position averaged
    half = rotation_from_quaternion(
        np.array([np.cos(np.pi / 8), 0.0, np.sin(np.pi / 8), 0.0])
    )  # 45 deg
    np.testing.assert_allclose(path[1, :, :3], half, atol=1e-12)
    assert interpolate_path(np.stack([a]), 5).shape == (5, 3, 4)


@pytest.mark.parametrize("frames", [1, 7])
def test_interpolate_path_shapes(frames):
    poses = np.repeat(np.eye(3, 4)[None], 4, 0)
    assert interpolate_path(poses, frames).shape == (frames, 3, 4)
