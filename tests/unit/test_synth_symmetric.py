"""The symmetric generated scene (nerfcli.data.synthetic.symmetric): its shapes' ray hits in
closed form, and the property it exists for: a camera and the same camera turned by a half
turn about the can's axis see the same picture."""

from __future__ import annotations

import numpy as np
import pytest

from nerfcli.data.synthetic import render_view
from nerfcli.data.synthetic.still_life import FLOOR_HEIGHT
from nerfcli.data.synthetic.symmetric import (
    CAN_HEIGHT,
    CAN_RADIUS,
    TILE,
    Cylinder,
    TiledFloor,
    symmetric_spec,
    walk_cameras,
)

HALF_TURN = np.diag([-1.0, 1.0, -1.0])  # about the vertical (y) axis through the can


def test_cylinder_hits_in_closed_form():
    can = Cylinder("can", 0.5, 0.0, 2.0, 1, ((0, 0, 0), (1, 1, 1)))
    origins = np.array([[3.0, 1.0, 0.0], [3.0, 3.0, 0.0], [0.0, 5.0, 0.0], [0.2, 1.0, 0.0]])
    directions = np.array([[-1.0, 0, 0], [-1.0, 0, 0], [0, -1.0, 0], [1.0, 0, 0]])
    t = can.hit_distance(origins, directions)
    # side at x = 0.5; above the can: miss; down onto the lid at y = 2; from inside: far wall.
    np.testing.assert_allclose(t, [2.5, np.inf, 3.0, 0.3])
    normal, _ = can.shade_inputs(origins[[0]] + t[0] * directions[[0]])
    np.testing.assert_allclose(normal, [[1.0, 0.0, 0.0]], atol=1e-12)
    floor = TiledFloor("floor", 2, height=-1.0)
    np.testing.assert_allclose(
        floor.hit_distance(origins[:2], np.array([[0, -1.0, 0]] * 2)), [2, 4]
    )


def test_patterns_are_unchanged_by_a_half_turn_about_the_axis():
    rng = np.random.default_rng(0)
    can = symmetric_spec(3).shapes[0]
    azimuth = rng.uniform(0, 2 * np.pi, 50)
    height = rng.uniform(FLOOR_HEIGHT, FLOOR_HEIGHT + CAN_HEIGHT, 50)
    side = np.stack([CAN_RADIUS * np.cos(azimuth), height, CAN_RADIUS * np.sin(azimuth)], 1)
    floor = TiledFloor("floor", 5)
    ground = np.stack(
        [rng.uniform(-5, 5, 50), np.full(50, FLOOR_HEIGHT), rng.uniform(-5, 5, 50)], 1
    )
    for shape, points in ((can, side), (floor, ground)):
        _, albedo = shape.shade_inputs(points)
        _, turned = shape.shade_inputs(points @ HALF_TURN.T)
        np.testing.assert_allclose(albedo, turned, atol=1e-9)
    grout = np.array([[0.5 * TILE, FLOOR_HEIGHT, 0.1], [3.5 * TILE, FLOOR_HEIGHT, -2.2]])
    np.testing.assert_allclose(floor.shade_inputs(grout)[1], 0.12, atol=0.011)  # tile edges


@pytest.mark.parametrize("view", [0, 5])
def test_a_camera_and_its_half_turned_twin_see_the_same_picture(view):
    spec = symmetric_spec(0)
    c2w = walk_cameras(12, np.random.default_rng([0, 2]))[view]
    twin = HALF_TURN @ c2w  # rotation columns and centre turned together
    image, depth = render_view(spec, c2w, 24, 32, 28.0, 1)
    twin_image, twin_depth = render_view(spec, twin, 24, 32, 28.0, 1)
    assert image.std() > 0.05  # a picture, not a blank
    np.testing.assert_allclose(twin_image, image, atol=1e-6)
    np.testing.assert_allclose(twin_depth, depth, rtol=1e-9)


def test_the_walk_goes_once_around_the_can_in_name_order():
    c2w = walk_cameras(36, np.random.default_rng([0, 2]))
    azimuth = np.degrees(np.arctan2(c2w[:, 2, 3], c2w[:, 0, 3])) % 360
    steps = np.diff(np.unwrap(np.radians(azimuth)))
    assert (np.degrees(steps) > 5).all() and np.degrees(steps.sum()) == pytest.approx(350, abs=8)
    looking = -c2w[:, :, 2]
    towards_axis = -c2w[:, :, 3] * np.array([1, 0, 1])
    cosines = np.sum(looking * towards_axis, 1) / np.linalg.norm(towards_axis, axis=1)
    assert (cosines > 0.8).all()  # every camera looks at the can


def test_make_scene_writes_the_walk_and_load_spec_rebuilds_the_symmetric_scene(tmp_path):
    from nerfcli.data.synthetic import load_spec, make_scene

    info = make_scene(tmp_path / "sym", preset="symmetric", views=6, height=12, width=16)
    assert info.num_views == 6 and (info.height, info.width) == (12, 16)
    assert sorted(p.name for p in (tmp_path / "sym" / "images").iterdir())[0] == "image000.png"
    spec = load_spec(tmp_path / "sym")
    assert [shape.name for shape in spec.shapes] == ["can", "floor", "room"]
    poses = np.load(tmp_path / "sym" / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)
    expected = walk_cameras(6, np.random.default_rng([0, 2]))  # [right, up, back] columns
    np.testing.assert_allclose(poses[:, :, 3], expected[:, :, 3])  # the centres, as written
    np.testing.assert_allclose(poses[:, :, 0], -expected[:, :, 1])  # stored "down" = -up
