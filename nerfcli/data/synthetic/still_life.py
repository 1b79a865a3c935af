"""The still life: which shapes stand where, with which textures, for a given seed."""

from __future__ import annotations

import dataclasses

import numpy as np

from nerfcli.data.synthetic.raycast import SceneSpec
from nerfcli.data.synthetic.shapes import Box, Plane, Shape, Sphere, Texture


def _rotation_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rotation_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _axis_angle(vector: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] of a rotation vector (Rodrigues)."""
    angle = float(np.linalg.norm(vector))
    if angle < 1e-15:
        return np.eye(3)
    k = vector / angle
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross


FLOOR_HEIGHT = -1.2
BACKDROP_DEPTH = 6.0


NOISE_PERIOD = 0.15  # finest detail of the textured variant, world units (~5 px at the backdrop)


class _Draws:
    """The seeded random draws of the still life, taken in one fixed order."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng([seed, 1])  # its own stream: cameras never shift objects

    def jitter(self, scale: float) -> np.ndarray:
        return self.rng.uniform(-scale, scale, 3)

    def color(self, rgb) -> tuple[float, float, float]:
        shifted = np.asarray(rgb) + self.rng.uniform(-0.05, 0.05, 3)
        return tuple(float(x) for x in np.clip(shifted, 0, 1))

    def phase(self) -> tuple[float, float, float]:
        return tuple(float(x) for x in self.rng.uniform(0.0, 2.0 * np.pi, 3))

    def uniform(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high)


X_AXIS, Y_AXIS, Z_AXIS = np.eye(3)


def scene_spec(seed: int = 0, textured: bool = False) -> SceneSpec:
    """The still life for `seed`: positions, colours and texture phases vary a little.

    `textured` keeps the same shapes but paints the planes and spheres with "noise" textures
    (see with_noise_textures), so SIFT finds many distinct features: the capture for `nerf sfm`.
    """
    draw = _Draws(seed)
    shapes: list[Shape] = [*_backdrop_and_floor(draw), *_cards(draw), *_spheres(draw), _box(draw)]
    spec = SceneSpec(shapes=shapes)
    return with_noise_textures(spec, seed) if textured else spec


def _backdrop_and_floor(draw: _Draws) -> list[Shape]:
    return [
        Plane(
            "backdrop",
            center=np.array([0.0, 0.0, -BACKDROP_DEPTH]),
            axis_u=X_AXIS,
            axis_v=Y_AXIS,
            half_size=(np.inf, np.inf),
            texture=Texture(
                "backdrop", draw.color((0.55, 0.6, 0.68)), period=0.6, phase=draw.phase()
            ),
        ),
        Plane(
            "floor",
            center=np.array([0.0, FLOOR_HEIGHT, -4.0]),
            axis_u=X_AXIS,
            axis_v=-Z_AXIS,  # normal = u x v = +y
            half_size=(np.inf, np.inf),
            texture=Texture(
                "planks", draw.color((0.66, 0.48, 0.32)), period=0.45, phase=draw.phase()
            ),
        ),
    ]


def _cards(draw: _Draws) -> list[Shape]:
    """Two cards standing on the floor, each turned about y by `yaw`, leaning back by `pitch`."""
    shapes: list[Shape] = []
    for name, center, half, yaw, pitch, texture in (
        (
            "card_stripes",
            np.array([-1.05, FLOOR_HEIGHT + 0.8, -4.5]),
            (0.5, 0.8),
            0.45,
            0.0,
            Texture(
                "stripes",
                draw.color((0.92, 0.85, 0.45)),
                draw.color((0.25, 0.45, 0.7)),
                period=0.32,
                angle=0.7,
                phase=draw.phase(),
            ),
        ),
        (
            "card_dots",
            np.array([1.1, FLOOR_HEIGHT + 0.6, -3.4]),
            (0.42, 0.6),
            -0.5,
            -0.12,
            Texture(
                "dots",
                draw.color((0.9, 0.9, 0.86)),
                draw.color((0.75, 0.2, 0.35)),
                period=0.26,
                phase=draw.phase(),
            ),
        ),
    ):
        rotation = _rotation_y(yaw + draw.uniform(-0.05, 0.05)) @ _rotation_x(pitch)
        shapes.append(
            Plane(
                name,
                center=center + draw.jitter(0.06) * np.array([1.0, 0.0, 1.0]),
                axis_u=rotation @ X_AXIS,
                axis_v=rotation @ Y_AXIS,
                half_size=half,
                texture=texture,
            )
        )
    return shapes


def _spheres(draw: _Draws) -> list[Shape]:
    shapes: list[Shape] = []
    for name, center, radius, texture in (
        (
            "sphere_banded",
            np.array([0.25, 0.0, -3.9]),
            0.45,
            Texture(
                "bands",
                draw.color((0.9, 0.45, 0.2)),
                draw.color((0.95, 0.8, 0.5)),
                period=6.0,
                phase=draw.phase(),
            ),
        ),
        (
            "sphere_plain",
            np.array([-0.55, 0.0, -2.9]),
            0.28,
            Texture("plain", draw.color((0.2, 0.35, 0.8))),
        ),
    ):
        center = center + draw.jitter(0.06) * np.array([1.0, 0.0, 1.0])
        center[1] = FLOOR_HEIGHT + radius  # resting on the floor
        shapes.append(Sphere(name, center=center, radius=radius, texture=texture))
    return shapes


def _box(draw: _Draws) -> Shape:
    return Box(
        "box",
        center=np.array([-0.45, FLOOR_HEIGHT + 0.3, -5.2]) + draw.jitter(0.06) * [1.0, 0.0, 1.0],
        half_extent=np.array([0.3, 0.3, 0.3]),
        rotation=_rotation_y(0.6 + draw.uniform(-0.1, 0.1)),
        color=draw.color((0.3, 0.68, 0.38)),
    )


def with_noise_textures(spec: SceneSpec, seed: int) -> SceneSpec:
    """The same shapes with each plane's and sphere's texture replaced by a "noise" texture
    between a dark and a light shade of its colour (boxes keep their flat faces)."""
    rng = np.random.default_rng([seed, 3])  # its own stream: the geometry stays as it was
    shapes: list[Shape] = []
    for shape in spec.shapes:
        if isinstance(shape, (Plane, Sphere)):
            base = np.asarray(shape.texture.color)
            # Spheres are textured over (longitude, latitude) in radians.
            period = NOISE_PERIOD / shape.radius if isinstance(shape, Sphere) else NOISE_PERIOD
            texture = Texture(
                "noise",
                tuple(float(x) for x in 0.3 * base),
                tuple(float(x) for x in np.clip(0.25 + 0.9 * base, 0.0, 1.0)),
                period=float(period),
                seed=int(rng.integers(0, 2**31)),
            )
            shape = dataclasses.replace(shape, texture=texture)
        shapes.append(shape)
    return dataclasses.replace(spec, shapes=shapes)
