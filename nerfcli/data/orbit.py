"""Walk-around captures: the normalisation into a training frame (centred on the cameras'
focus point, unit mean camera distance) and an orbit render path fitted to the cameras (the
best-fit circle of the camera centres: a plane by SVD, a least-squares circle in it, with
fallbacks for captures that are no circle), every frame looking at a given point.

Poses are camera-to-world [..., 3, 4] with rotation columns [right, up, back] (OpenGL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nerfcli.errors import DataError

COLLINEAR = 1e-6  # second singular value / first below this: the centres lie on a line
MAX_TILT = math.cos(math.radians(30.0))  # SVD plane normals beyond 30 deg of the mean up: up
ON_CIRCLE = 0.1  # RMS radial residual / radius below this: the cameras do lie on a circle
FULL_TURN_GAP = 0.5 * math.pi  # cameras leaving no angular gap wider than this: a full orbit
UPS_AGREE = 0.9  # the cameras' unit up vectors agree when their mean is at least this long
LEVEL = 0.05  # |mean viewing direction . normal| below this: the cameras look level


@dataclass
class Circle:
    center: np.ndarray  # [3]
    normal: np.ndarray  # [3] unit, on the side of the cameras' mean up vector
    axis_u: np.ndarray  # [3] unit, in the plane; axis_u x axis_v = normal
    axis_v: np.ndarray  # [3]
    radius: float


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 and np.isfinite(n) else fallback


def _plane_normal(points: np.ndarray, up: np.ndarray) -> np.ndarray:
    """The normal of the points' best-fit plane (SVD) when they span one within 30 degrees of
    `up` (a tilted walk around an object); else `up` itself (collinear cameras, or a capture
    that goes up and down more than around, such as fox's 85-degree arc at several heights)."""
    if len(points) >= 3:
        _, s, vt = np.linalg.svd(points - points.mean(0), full_matrices=False)
        if s[0] > 0 and s[1] > COLLINEAR * s[0]:
            normal = vt[2] if vt[2] @ up >= 0 else -vt[2]
            if normal @ up >= MAX_TILT:
                return normal
    return up


def world_up(c2w: np.ndarray) -> np.ndarray:
    """The capture's up direction [3] (unit) from camera-to-world c2w [N, 3, >=4] (OpenGL
    columns [right, up, back, centre]).

    The cameras' mean up vector (instant-ngp's and nerfstudio's rule) when the cameras agree on
    it (their unit up vectors' mean at least UPS_AGREE long: fox's 0.95) or when it is within
    30 degrees of the normal of the plane the camera centres lie in. Otherwise the photos were
    taken at different roll angles, or all turned on their side (cup's: a mean up 0.69 long,
    86 degrees from the walk's plane), and the camera up says nothing about the world: the
    plane's normal is up, on the side the cameras look down from (an object on a table is
    photographed from above it; level cameras: the side of the mean up)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    ups = c2w[:, :3, 1]  # [N, 3]
    mean_up = ups.mean(0)
    up = _unit(mean_up, np.array([0.0, 0.0, 1.0]))
    positions = c2w[:, :3, 3]
    if len(c2w) < 3 or np.linalg.norm(mean_up) >= UPS_AGREE:
        return up
    _, sv, vt = np.linalg.svd(positions - positions.mean(0), full_matrices=False)
    if not (sv[0] > 0 and sv[1] > COLLINEAR * sv[0]):
        return up
    normal = vt[2]
    if np.linalg.norm(mean_up) > 1e-6 and abs(normal @ up) >= MAX_TILT:
        return up
    looking = -c2w[:, :3, 2].mean(0) @ normal  # mean viewing direction along the normal
    side = -looking if abs(looking) > LEVEL else normal @ mean_up
    return normal if side >= 0 else -normal


def fit_circle(points: np.ndarray, up: np.ndarray, center: np.ndarray | None = None) -> Circle:
    """The circle best fitting points [N, 3]: a plane (see _plane_normal), then the algebraic
    (Kasa) least-squares circle of the points projected into it. When the points do not lie
    on a circle (RMS radial residual over ON_CIRCLE of the radius, or fewer than 3 points) the
    circle is centred on `center` projected into the plane (their centroid if None), with
    their mean distance to it as radius."""
    up = _unit(np.asarray(up, dtype=np.float64), np.array([0.0, 0.0, 1.0]))
    normal = _plane_normal(points, up)
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    axis_u = _unit(np.cross(normal, helper), np.array([1.0, 0.0, 0.0]))
    axis_v = np.cross(normal, axis_u)
    mean = points.mean(0)
    uv = np.stack([(points - mean) @ axis_u, (points - mean) @ axis_v], 1)  # [N, 2]
    centre_uv = np.zeros(2)
    if center is not None:
        centre_uv = np.array([(center - mean) @ axis_u, (center - mean) @ axis_v])
    if len(points) >= 3:
        a = np.concatenate([2.0 * uv, np.ones((len(uv), 1))], 1)  # [N, 3]
        sol, *_ = np.linalg.lstsq(a, (uv**2).sum(1), rcond=None)
        r2 = sol[2] + sol[0] ** 2 + sol[1] ** 2
        if np.isfinite(sol).all() and r2 > 0:
            residual = np.sqrt(np.mean((np.linalg.norm(uv - sol[:2], axis=1) - np.sqrt(r2)) ** 2))
            if residual < ON_CIRCLE * np.sqrt(r2):
                centre_uv = sol[:2]
    radius = float(np.linalg.norm(uv - centre_uv, axis=1).mean())
    return Circle(
        mean + centre_uv[0] * axis_u + centre_uv[1] * axis_v, normal, axis_u, axis_v, radius
    )


def look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Camera-to-world [3, 4] at `position` looking at `target` (-z), `up` as the up hint."""
    back = _unit(position - target, up)
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-9:  # looking straight along the up hint: any right will do
        helper = np.array([1.0, 0.0, 0.0]) if abs(back[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        right = np.cross(helper, back)
    right = _unit(right, np.array([1.0, 0.0, 0.0]))
    return np.stack([right, np.cross(back, right), back, position], 1)


def _angles(points: np.ndarray, circle: Circle) -> np.ndarray:
    rel = points - circle.center
    return np.arctan2(rel @ circle.axis_v, rel @ circle.axis_u)  # [N]


def _orbit_angles(angles: np.ndarray, frames: int) -> np.ndarray:
    """[F] angles: a full turn from the first camera the way the capture walked when the
    cameras go all round; else the arc they cover, there and back (eased, so it loops)."""
    ring = np.sort(np.mod(angles, 2.0 * np.pi))
    gaps = np.diff(np.append(ring, ring[0] + 2.0 * np.pi))  # [N], gap after each camera
    widest = int(np.argmax(gaps))
    span = 2.0 * np.pi - gaps[widest]
    s = np.linspace(0.0, 2.0 * np.pi, frames + 1)[:-1]
    if gaps[widest] > FULL_TURN_GAP and span > 1e-6:
        return ring[(widest + 1) % len(ring)] + span * 0.5 * (1.0 - np.cos(s))
    steps = np.angle(np.exp(1j * np.diff(angles))) if len(angles) > 1 else np.zeros(1)
    return angles[0] + (-1.0 if steps.sum() < 0 else 1.0) * s


def orbit_path(c2w: np.ndarray, center: np.ndarray, frames: int = 120) -> np.ndarray:
    """`frames` poses [F, 3, 4] on the best-fit circle of the camera centres of c2w [N, 3, >=4]
    (fit_circle, around `center` when they are not on a circle), every one looking at
    `center` [3], up along the circle's normal (on the side of the cameras' mean up): a full
    turn when the cameras go all round, else the arc they cover, there and back. The circle's
    normal is on the side of `world_up`."""
    c2w = np.asarray(c2w, dtype=np.float64)
    center = np.asarray(center, dtype=np.float64)
    positions = c2w[:, :3, 3]  # [N, 3]
    circle = fit_circle(positions, world_up(c2w), center)
    radius = circle.radius
    if not radius > 1e-9:  # cameras on the circle's axis: orbit at their distance from `center`
        radius = max(float(np.linalg.norm(positions[0] - center)), 1.0)
    path = []
    for theta in _orbit_angles(_angles(positions, circle), frames):
        position = circle.center + radius * (
            np.cos(theta) * circle.axis_u + np.sin(theta) * circle.axis_v
        )
        path.append(look_at(position, center, circle.normal))
    return np.stack(path, 0)  # [F, 3, 4]


@dataclass
class Normalisation:
    world_from_file: np.ndarray  # [4, 4] float64
    scale: float
    focus: np.ndarray  # [3] in the file's frame
    method: str  # "focus" or "mean"


def normalisation(c2w: np.ndarray, where: str = "cameras") -> Normalisation:
    """Centre on the focus point of the optical axes of c2w [N, 4, 4] (mean camera centre when
    that is ill-posed or behind most cameras) and scale the mean camera distance to 1."""
    centres, axes = c2w[:, :3, 3], c2w[:, :3, 2]  # [N, 3] each (back axes, unit)
    with np.errstate(all="ignore"):
        proj = np.eye(3) - axes[:, :, None] * axes[:, None, :]  # [N, 3, 3]
        a, b = proj.sum(0), (proj @ centres[:, :, None]).sum(0)[:, 0]
        focus, method = centres.mean(0), "mean"
        if len(c2w) >= 2 and np.isfinite(a).all() and np.linalg.cond(a) < 1e6:
            point = np.linalg.solve(a, b)
            ahead = ((point - centres) * -axes).sum(1) > 0  # [N]
            if np.isfinite(point).all() and ahead.mean() >= 0.5:
                focus, method = point, "focus"
        radius = float(np.linalg.norm(centres - focus, axis=1).mean())
        scale = 1.0 / radius if radius > 0 else 1.0
        world = np.diag([scale, scale, scale, 1.0])
        world[:3, 3] = -scale * focus
    if not (np.isfinite(world).all() and math.isfinite(scale) and scale > 0):
        raise DataError(f"{where}: camera positions too extreme to normalise (overflow)")
    return Normalisation(world, scale, focus, method)


__all__ = [
    "Circle",
    "Normalisation",
    "fit_circle",
    "look_at",
    "normalisation",
    "orbit_path",
    "world_up",
]
