"""The walk-around training frame and orbit path (nerfcli.data.orbit): the focus point is the
least-squares point of the optical axes; the orbit fits a tilted circle, sweeps an arc there and
back, turns fully round when the cameras do, and always looks at the centre."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nerfcli.data.orbit import fit_circle, normalisation, orbit_path, world_up
from tests.unit.test_transforms import TARGET, look_at


def test_focus_point_is_the_least_squares_point_of_the_axes():
    c2w = np.array(
        [look_at(TARGET + [3 * math.cos(t), 3 * math.sin(t), 1.0]) for t in np.linspace(0, 5, 7)]
    )
    c2w[:, :3, 3] += np.random.default_rng(0).normal(0, 0.05, (7, 3))  # axes no longer meet
    norm = normalisation(c2w)
    assert norm.method == "focus" and np.allclose(norm.focus, TARGET, atol=0.2)

    def cost(p):  # sum of squared distances from p to the optical axes
        rel = p - c2w[:, :3, 3]
        return float((np.linalg.norm(rel, axis=1) ** 2 - (rel * c2w[:, :3, 2]).sum(1) ** 2).sum())

    for step in np.eye(3) * 1e-3:
        assert cost(norm.focus) < cost(norm.focus + step) and cost(norm.focus) < cost(
            norm.focus - step
        )
    assert normalisation(c2w[:1]).method == "mean"  # one camera: no intersection


def tilted_circle(angles, centre=np.array([0.5, -0.2, 0.4])):
    """Cameras at `angles` on a radius-2 circle tilted 20 degrees, looking at its centre."""
    normal = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    u = np.cross(normal, [1.0, 0, 0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    pos = centre + 2.0 * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)
    return pos, np.array([look_at(p, centre)[:3] for p in pos]), normal, centre


def test_orbit_on_an_arc_goes_there_and_back_looking_at_the_centre():
    pos, c2w, normal, centre = tilted_circle(np.linspace(0.3, 4.0, 12))  # a partial walk
    circle = fit_circle(pos, c2w[:, :, 1].mean(0))
    assert circle.radius == pytest.approx(2.0) and np.allclose(circle.center, centre)
    assert abs(circle.normal @ normal) == pytest.approx(1.0)
    path = orbit_path(c2w, np.zeros(3), 30)
    assert path.shape == (30, 3, 4) and np.allclose(path[0, :, 3], pos[0])
    assert np.allclose(path[15, :, 3], pos[-1])  # the far end of the arc halfway
    assert np.allclose(np.linalg.norm(path[:, :, 3] - centre, axis=1), 2.0)
    back = path[:, :, 2]
    assert np.allclose(back, path[:, :, 3] / np.linalg.norm(path[:, :, 3], axis=1, keepdims=True))
    assert np.allclose(
        np.einsum("fij,fik->fjk", path[:, :, :3], path[:, :, :3]), np.eye(3), atol=1e-9
    )
    assert (path[1, :, 3] - path[0, :, 3]) @ (pos[1] - pos[0]) > 0  # the way the capture walked


def test_orbit_all_round_is_a_full_turn_the_way_the_capture_walked():
    pos, c2w, _, centre = tilted_circle(-np.linspace(0, 2 * np.pi, 12, endpoint=False))
    path = orbit_path(c2w, centre, 24)
    assert np.allclose(path[0, :, 3], pos[0]) and np.allclose(path[12, :, 3], pos[6])
    assert np.allclose(path[2, :, 3], pos[1])  # clockwise, as the cameras
    assert (path[:, :, 1] @ c2w[:, :, 1].mean(0) > 0).all()


def rolled(c2w: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """c2w [N, 3, 4] with each camera turned about its viewing axis (a photo held on its side)."""
    out = c2w.copy()
    for i, angle in enumerate(np.radians(degrees)):
        right, up = c2w[i, :, 0], c2w[i, :, 1]
        out[i, :, 0] = math.cos(angle) * right + math.sin(angle) * up
        out[i, :, 1] = -math.sin(angle) * right + math.cos(angle) * up
    return out


def ring_looking_down(count: int = 16, height: float = 1.0) -> np.ndarray:
    """Cameras all round a radius-2 ring `height` above the origin, looking at it (down)."""
    return np.array(
        [
            look_at(np.array([2 * math.cos(t), 2 * math.sin(t), height]), np.zeros(3))[:3]
            for t in np.linspace(0, 2 * math.pi, count, endpoint=False)
        ]
    )


def test_world_up_is_the_cameras_mean_up_when_they_agree():
    c2w = ring_looking_down()
    assert np.allclose(world_up(c2w), [0, 0, 1], atol=1e-9)
    # a small roll each (hand-held) keeps the mean up
    shaken = rolled(c2w, np.random.default_rng(1).normal(0, 5, len(c2w)))
    assert world_up(shaken) @ [0, 0, 1] > math.cos(math.radians(5))


@pytest.mark.parametrize("roll", [90.0, -90.0])
def test_world_up_of_photos_on_their_side_is_the_walk_plane_normal_cameras_look_down_from(roll):
    # every photo turned 90 degrees (cup's capture): the camera ups are horizontal, the world's
    # up is still the ring's normal, on the side the cameras look down from
    c2w = rolled(ring_looking_down(), np.full(16, roll))
    assert abs(c2w[:, :, 1] @ [0, 0, 1]).max() < 1e-9  # every camera up horizontal
    assert np.allclose(world_up(c2w), [0, 0, 1], atol=1e-9)
    below = rolled(ring_looking_down(height=-1.0), np.full(16, roll))  # looking up at it
    assert np.allclose(world_up(below), [0, 0, -1], atol=1e-9)
    # the orbit then stands upright in the world: level right vectors, up along +z
    path = orbit_path(c2w, np.zeros(3), 24)
    assert np.allclose(path[:, 2, 0], 0.0, atol=1e-9)  # right vectors horizontal
    assert (path[:, 2, 1] > 0).all()  # camera up has a +z component


def test_world_up_of_mixed_rolls_on_a_ring():
    # half the photos landscape, half portrait: the ups disagree; the ring's normal is up
    c2w = rolled(ring_looking_down(), np.tile([0.0, 90.0], 8))
    assert np.allclose(world_up(c2w), [0, 0, 1], atol=1e-9)
