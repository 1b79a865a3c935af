"""Rays and NDC: closed-form conventions and properties (rays project back to their pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerfcli.data.cameras import intrinsics
from nerfcli.data.rays import Rays, get_rays, make_pixel_rays, make_rays, ndc_rays, pixel_directions
from tests.unit.test_llff import rotation_from_quaternion


def test_principal_ray_is_minus_z_in_the_camera_frame():
    height, width, focal = 6, 8, 5.0
    origins, directions = get_rays(height, width, intrinsics(height, width, focal), np.eye(3, 4))
    # Pixel (column W/2, row H/2) is the principal point: straight down -z.
    torch.testing.assert_close(directions[3, 4], torch.tensor([0.0, 0.0, -1.0]))
    torch.testing.assert_close(origins, torch.zeros(height, width, 3))


def test_pixel_directions_closed_form():
    height, width, focal = 4, 6, 2.0
    dirs = pixel_directions(height, width, intrinsics(height, width, focal))  # [H, W, 3]
    assert dirs.shape == (4, 6, 3)
    # Column i, row j -> [(i - W/2) / f, -(j - H/2) / f, -1]: x grows right, y grows up.
    torch.testing.assert_close(dirs[0, 0], torch.tensor([-1.5, 1.0, -1.0]))
    torch.testing.assert_close(dirs[3, 5], torch.tensor([1.0, -0.5, -1.0]))
    torch.testing.assert_close(dirs[1, 4], torch.tensor([0.5, 0.5, -1.0]))


def test_rays_are_rotated_and_translated_by_c2w():
    # A camera turned 90 degrees about y (looking along -x) at (1, 2, 3).
    rotation = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    c2w = np.concatenate([rotation, [[1.0], [2.0], [3.0]]], 1)
    origins, directions = get_rays(4, 4, intrinsics(4, 4, 2.0), c2w)
    torch.testing.assert_close(directions[2, 2], torch.tensor([-1.0, 0.0, 0.0]))
    torch.testing.assert_close(origins[0, 1], torch.tensor([1.0, 2.0, 3.0]))
    # Pixel column 0 is to the camera's left, which is +z for this camera.
    torch.testing.assert_close(directions[2, 0], torch.tensor([-1.0, 0.0, 1.0]))


def test_ndc_maps_the_near_plane_to_minus_one_and_infinity_to_plus_one():
    height, width, focal, near = 6, 8, 5.0, 1.0
    origins, directions = get_rays(height, width, intrinsics(height, width, focal), np.eye(3, 4))
    ndc_o, ndc_d = ndc_rays(height, width, focal, near, origins, directions)
    # Origins are moved onto z = -near, which maps to -1; t = 1 is z = -infinity -> +1.
    torch.testing.assert_close(ndc_o[..., 2], torch.full((height, width), -1.0))
    torch.testing.assert_close((ndc_o + ndc_d)[..., 2], torch.full((height, width), 1.0))
    # The image corners map to the corners of the NDC cube [-1, 1]^2 at the principal rays'
    # field of view: x_ndc = -(2 f / W) x / z on the near plane.
    torch.testing.assert_close(ndc_o[3, 0, :2], torch.tensor([-1.0, 0.0]))
    torch.testing.assert_close(ndc_o[0, 4, :2], torch.tensor([0.0, 1.0]))


def ndc_point(point: np.ndarray, height: int, width: int, focal: float, near: float) -> np.ndarray:
    """The NDC coordinates of a camera-frame point (z < 0), by the projection's definition."""
    x, y, z = point
    return np.array([-2 * focal / width * x / z, -2 * focal / height * y / z, 1 + 2 * near / z])


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(2, 50),
    width=st.integers(2, 50),
    focal=st.floats(1.0, 200.0),
    near=st.floats(0.1, 3.0),
    column=st.floats(0.0, 1.0),
    row=st.floats(0.0, 1.0),
    depth=st.floats(1.01, 50.0),
)
def test_ndc_rays_pass_through_the_ndc_image_of_their_world_points(
    height, width, focal, near, column, row, depth
):
    # For a camera at the origin, a point on the ray beyond the near plane lands on the NDC ray
    # at a parameter t in [0, 1].
    j, i = int(row * (height - 1)), int(column * (width - 1))
    origins, directions = get_rays(height, width, intrinsics(height, width, focal), np.eye(3, 4))
    ndc_o, ndc_d = ndc_rays(height, width, focal, near, origins, directions)
    direction = directions[j, i].double().numpy()
    point = direction * (near * depth)  # z = -near * depth
    target = ndc_point(point, height, width, focal, near)
    o, d = ndc_o[j, i].double().numpy(), ndc_d[j, i].double().numpy()
    t = (target[2] - o[2]) / d[2]
    assert -1e-5 <= t <= 1 + 1e-5
    np.testing.assert_allclose(o + t * d, target, atol=1e-4, rtol=1e-4)


@st.composite
def cameras(draw):
    height = draw(st.integers(1, 64))
    width = draw(st.integers(1, 64))
    fx = draw(st.floats(5.0, 500.0))
    fy = draw(st.floats(5.0, 500.0))
    cx = draw(st.floats(0.0, float(width)))
    cy = draw(st.floats(0.0, float(height)))
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    q = draw(
        st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1)
    )
    position = draw(st.lists(st.floats(-10, 10), min_size=3, max_size=3))
    c2w = np.concatenate([rotation_from_quaternion(np.array(q)), np.array(position)[:, None]], 1)
    return height, width, K, c2w


@settings(max_examples=80, deadline=None)
@given(camera=cameras(), data=st.data())
def test_rays_project_back_to_their_pixels(camera, data):
    height, width, K, c2w = camera
    origins, directions = get_rays(height, width, K, c2w)  # [H, W, 3]
    row = data.draw(st.integers(0, height - 1))
    column = data.draw(st.integers(0, width - 1))
    distance = data.draw(st.floats(0.1, 100.0))
    point = (origins[row, column] + distance * directions[row, column]).double().numpy()
    # World -> camera -> pixel with the same convention: x right, y up, looking down -z.
    camera_point = c2w[:, :3].T @ (point - c2w[:, 3])
    assert camera_point[2] < 0  # in front of the camera
    u = K[0, 2] + K[0, 0] * camera_point[0] / -camera_point[2]
    v = K[1, 2] - K[1, 1] * camera_point[1] / -camera_point[2]
    # The rays are float32: the point carries a rounding error of about eps32 * |point| per
    # coordinate, which projects to (focal / depth) times that in pixels (a camera 10 units
    # from the origin, a point 0.1 in front of it, focal 380: ~0.02 px).
    rounding = 4 * np.finfo(np.float32).eps * (np.abs(point).max() + 1.0) / -camera_point[2]
    assert u == pytest.approx(column, abs=2e-3 + K[0, 0] * rounding)
    assert v == pytest.approx(row, abs=2e-3 + K[1, 1] * rounding)


@settings(max_examples=40, deadline=None)
@given(camera=cameras(), ndc=st.booleans())
def test_viewdirs_are_unit_length_and_pre_ndc(camera, ndc):
    height, width, K, c2w = camera
    focal = float(K[0, 0])
    K = intrinsics(height, width, focal)  # NDC assumes the centred pinhole
    rays = make_rays(height, width, focal, c2w, ndc=ndc)
    lengths = torch.linalg.norm(rays.viewdirs, dim=-1)
    torch.testing.assert_close(lengths, torch.ones(height, width), atol=1e-5, rtol=0)
    _, directions = get_rays(height, width, K, c2w)
    cosine = (rays.viewdirs * directions).sum(-1) / torch.linalg.norm(directions, dim=-1)
    torch.testing.assert_close(cosine, torch.ones(height, width), atol=1e-5, rtol=0)


@settings(max_examples=40, deadline=None)
@given(camera=cameras(), ndc=st.booleans(), data=st.data())
def test_pixel_rays_equal_the_full_image_rays_exactly(camera, ndc, data):
    height, width, K, c2w = camera
    focal = float(K[0, 0])
    full = make_rays(height, width, focal, c2w, ndc=ndc)  # [H, W]
    count = data.draw(st.integers(1, 6))
    rows = np.array(data.draw(st.lists(st.integers(0, height - 1), min_size=count, max_size=count)))
    cols = np.array(data.draw(st.lists(st.integers(0, width - 1), min_size=count, max_size=count)))
    picked = make_pixel_rays(height, width, focal, c2w, ndc, cols, rows)  # [P]
    assert torch.equal(picked.origins, full.origins[rows, cols])
    assert torch.equal(picked.directions, full.directions[rows, cols])
    assert torch.equal(picked.viewdirs, full.viewdirs[rows, cols])


def test_make_rays_shapes_and_ndc_origin_plane():
    c2w = np.eye(3, 4)
    rays = make_rays(6, 8, 5.0, c2w, ndc=True)
    assert isinstance(rays, Rays)
    assert rays.origins.shape == rays.directions.shape == rays.viewdirs.shape == (6, 8, 3)
    torch.testing.assert_close(rays.origins[..., 2], torch.full((6, 8), -1.0))
    flat = rays.reshape(-1)
    assert len(flat) == 48
    torch.testing.assert_close(flat[10].viewdirs, rays.viewdirs[1, 2])
