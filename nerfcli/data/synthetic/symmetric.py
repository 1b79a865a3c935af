"""The symmetric walk-around capture (make-scene's "symmetric" preset): a can-like cylinder on
a tiled floor inside a round room, every surface's pattern unchanged by a half turn about the
can's axis, lit from straight above, photographed by cameras walking once around the can.

It is the scene on which structure from motion makes the doppelganger mistake: a photo of the
can from one side is, pixel for pixel, a photo from the opposite side, so matches between
opposite photos pass geometric verification and cameras get placed on the wrong side (see
nerfcli.data.pose_checks). The patterns:
- can: two noise fields of (cos 2a, sin 2a) around the axis (a the azimuth) and the height, so
  azimuth a and a + 180 deg look the same; its lid likewise;
- floor: square tiles (TILE wide, dark grout lines repeating over the floor) under a stone
  pattern symmetric about the can's axis; the can stands on a tile centre, so the floor maps
  onto itself. (Tiles identical in pattern too left SIFT's ratio test nothing on the floor:
  the mapper then recovered a focal length 10-25% off and poses 2-4 degrees off.)
- room: the wall is a cylinder about the same axis with the can's kind of pattern.
The light points straight down, so the shading is symmetric too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nerfcli.data.synthetic.raycast import SceneSpec
from nerfcli.data.synthetic.shapes import HIT_EPSILON, _noise_field, _unit
from nerfcli.data.synthetic.still_life import FLOOR_HEIGHT, _axis_angle

TILE = 0.6  # floor tile width, world units
GROUT = 0.025  # half-width of the grout lines
CAN_RADIUS = 0.45
CAN_HEIGHT = 1.3
ROOM_RADIUS = 9.0
ROOM_HEIGHT = 12.0
WALK_RADIUS = 2.6  # cameras' distance from the can's axis
WALK_HEIGHT = 1.5  # above the floor
WALK_WAVE = 0.5  # amplitude of the height wave along the walk
SYMMETRIC_AMBIENT = 0.55  # light from above leaves the can's side at the ambient level


def _symmetric_weight(s: np.ndarray, t: np.ndarray, seed: int, period: float) -> np.ndarray:
    """[R] in [0, 1]: a noise pattern unchanged by (s, t) -> (-s, -t)."""
    field = _noise_field(s, t, seed, period) + _noise_field(-s, -t, seed, period)
    return 0.5 + 0.5 * np.tanh(1.2 * field)


def _mix(dark: tuple, light: tuple, weight: np.ndarray) -> np.ndarray:
    a, b = np.asarray(dark, dtype=np.float64), np.asarray(light, dtype=np.float64)
    return a[None, :] + (b - a)[None, :] * weight[:, None]


@dataclass
class TiledFloor:
    """The plane y = FLOOR_HEIGHT: tiles centred on (x, z) = (0, 0) under a pattern that a half
    turn about the y axis leaves unchanged."""

    name: str
    seed: int
    height: float = FLOOR_HEIGHT

    def hit_distance(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.height - origins[:, 1]) / directions[:, 1]  # [R]
        return np.where(np.isfinite(t) & (t > HIT_EPSILON), t, np.inf)

    def bounding_sphere(self) -> None:
        return None

    def shade_inputs(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        local = (points[:, [0, 2]] + 0.5 * TILE) % TILE - 0.5 * TILE  # [R, 2] from tile centre
        weight = _symmetric_weight(points[:, 0], points[:, 2], self.seed, 0.06)
        albedo = _mix((0.35, 0.3, 0.26), (0.92, 0.88, 0.8), weight)  # [R, 3]
        grout = (np.abs(local) > 0.5 * TILE - GROUT).any(1)
        albedo[grout] = (0.12, 0.12, 0.13)
        normal = np.broadcast_to(np.array([0.0, 1.0, 0.0]), points.shape).copy()
        return normal, albedo

    def surface_distance(self, points: np.ndarray) -> np.ndarray:
        return np.abs(points[:, 1] - self.height)

    def to_json(self) -> dict:
        return {"type": "tiled_floor", "name": self.name, "seed": self.seed, "tile": TILE}


@dataclass
class Cylinder:
    """A vertical cylinder about (x, z) = (0, 0) from `bottom` up `height`, with a lid when
    `lid`; its side (and lid) carry a pattern unchanged by a half turn about the axis."""

    name: str
    radius: float
    bottom: float
    height: float
    seed: int
    colors: tuple[tuple[float, float, float], tuple[float, float, float]]
    lid: bool = True

    def hit_distance(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        ox, oz, dx, dz = origins[:, 0], origins[:, 2], directions[:, 0], directions[:, 2]
        a = dx * dx + dz * dz  # [R]
        b = ox * dx + oz * dz  # half the usual b
        c = ox * ox + oz * oz - self.radius**2
        disc = b * b - a * c
        root = np.sqrt(np.maximum(disc, 0.0))
        best = np.full(origins.shape[0], np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            for t in ((-b - root) / a, (-b + root) / a):
                y = origins[:, 1] + t * directions[:, 1]
                ok = (disc >= 0) & (a > 1e-12) & (t > HIT_EPSILON)
                ok &= (y >= self.bottom) & (y <= self.bottom + self.height)
                best = np.where(ok & (t < best), t, best)
            if self.lid:
                t = (self.bottom + self.height - origins[:, 1]) / directions[:, 1]
                x, z = ox + t * dx, oz + t * dz
                ok = np.isfinite(t) & (t > HIT_EPSILON) & (x * x + z * z <= self.radius**2)
                best = np.where(ok & (t < best), t, best)
        return best

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        centre = np.array([0.0, self.bottom + 0.5 * self.height, 0.0])
        return centre, float(np.hypot(self.radius, 0.5 * self.height)) * 1.001

    def shade_inputs(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = self.lid & (points[:, 1] >= self.bottom + self.height - 1e-9)  # [R]
        azimuth = np.arctan2(points[:, 2], points[:, 0])
        s = self.radius * np.cos(2.0 * azimuth)  # unchanged by azimuth + pi
        t = self.radius * np.sin(2.0 * azimuth)
        height = points[:, 1] - self.bottom
        period = 0.05 * max(1.0, self.radius / CAN_RADIUS)
        weight = 0.5 * (
            _symmetric_weight(s + height, t, self.seed, period)
            + _symmetric_weight(height - t, s, self.seed + 1, period)
        )
        lid = _symmetric_weight(points[:, 0], points[:, 2], self.seed + 2, 0.05)
        weight = np.where(top, lid, weight)
        normal = np.stack([points[:, 0], np.zeros(len(points)), points[:, 2]], 1)  # [R, 3]
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        normal[top] = (0.0, 1.0, 0.0)
        return normal, _mix(self.colors[0], self.colors[1], weight)

    def surface_distance(self, points: np.ndarray) -> np.ndarray:
        radial = np.abs(np.hypot(points[:, 0], points[:, 2]) - self.radius)
        below = np.maximum(self.bottom - points[:, 1], 0.0)
        above = np.maximum(points[:, 1] - self.bottom - self.height, 0.0)
        return np.sqrt(radial**2 + below**2 + above**2)

    def to_json(self) -> dict:
        return {
            "type": "cylinder",
            "name": self.name,
            "radius": self.radius,
            "bottom": self.bottom,
            "height": self.height,
            "seed": self.seed,
            "lid": self.lid,
        }


def symmetric_spec(seed: int = 0) -> SceneSpec:
    """The can, the tiled floor and the round room for `seed` (the patterns' seeds)."""
    base = 1000 * int(seed)
    shapes = [
        Cylinder(
            "can",
            CAN_RADIUS,
            FLOOR_HEIGHT,
            CAN_HEIGHT,
            base + 11,
            ((0.6, 0.1, 0.1), (0.95, 0.9, 0.75)),
        ),
        TiledFloor("floor", base + 21),
        Cylinder(
            "room",
            ROOM_RADIUS,
            FLOOR_HEIGHT,
            ROOM_HEIGHT,
            base + 31,
            ((0.25, 0.35, 0.45), (0.8, 0.85, 0.9)),
            lid=False,
        ),
    ]
    return SceneSpec(
        shapes=shapes,  # type: ignore[arg-type]
        light_direction=np.array([0.0, 1.0, 0.0]),
        ambient=SYMMETRIC_AMBIENT,
    )


def walk_cameras(num_views: int, rng: np.random.Generator) -> np.ndarray:
    """Camera-to-world [N, 3, 4] ([right, up, back] columns, y up) walking once around the
    can, in name order: even azimuth steps with a little jitter in place, height and aim, a
    height that rises and falls three times per turn, and a hand-held roll and pitch of about
    a degree."""
    poses = []
    target = np.array([0.0, FLOOR_HEIGHT + 0.45 * CAN_HEIGHT, 0.0])
    for k in range(num_views):
        azimuth = 2.0 * np.pi * (k + rng.uniform(-0.15, 0.15)) / num_views
        radius = WALK_RADIUS + rng.normal(0.0, 0.05)
        # The phone rises and falls along the walk (a turntable-like walk at one height leaves
        # the focal length ill-determined: 248 px recovered for the true 224 without this wave).
        wave = WALK_WAVE * np.sin(3.0 * azimuth)
        height = FLOOR_HEIGHT + WALK_HEIGHT + wave + rng.normal(0.0, 0.05)
        position = np.array([radius * np.cos(azimuth), height, radius * np.sin(azimuth)])
        back = _unit(position - (target + rng.normal(0.0, 0.03, 3)))
        right = _unit(np.cross([0.0, 1.0, 0.0], back))
        up = np.cross(back, right)
        rotation = np.stack([right, up, back], 1) @ _axis_angle(rng.normal(0.0, 0.015, 3))
        poses.append(np.concatenate([rotation, position[:, None]], 1))
    return np.stack(poses, 0)
