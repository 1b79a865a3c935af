"""A generated forward-facing capture in LLFF layout, rendered by a small analytic ray caster.

The scene is a table-top still life seen by a hand-held camera: a textured backdrop (soft
checker over a smooth colour field), a wooden floor, two textured cards standing at
intermediate depths, two spheres and a box, lit by one directional light with Lambertian
shading and hard shadows (all view-independent, so a radiance field can reproduce it exactly).
Cameras sit on a jittered grid in the plane z ~ 0, all looking down -z with a slight toe-in and
a small random rotation, like a hand-held LLFF capture; so recentering and NDC behave as on fern.

Written layout (what `nerfcli.data.formats.llff.load_scene` reads):
    poses_bounds.npy   [N, 17]: 3x5 [R | t | hwf] with rotation columns [down, right, back]
                       (the stored LLFF convention), then near, far = 0.9 * min and 1.1 * max of
                       that view's true depth
    images/imageNNN.png  uint8 RGB, supersampled (s x s rays per pixel, averaged)
    depth/imageNNN.npy   float32 [H, W] z-depth of the pixel's centre ray: distance along the
                       camera's viewing axis, in the world units of the poses
    scene.json         the generator's parameters (seed, preset, objects, cameras)

Pixel convention (nerfcli.data.rays): pixel (i, j) = (column, row) looks along
[(i - W/2) / f, -(j - H/2) / f, -1] in the camera frame [right, up, back], with no half-pixel
offset. Because that direction has camera z = -1, the ray parameter of a hit is its z-depth.

Everything is numpy, deterministic from the seed, and vectorised over the rays of one view.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nerfcli.errors import ConfigError, NerfError
from nerfcli.fsutil import current_umask

GENERATOR = "nerfcli.synth"  # kept stable: scenes written by earlier versions say so
GENERATOR_VERSION = 1
LLFFHOLD = 8  # the loader's default hold-out: views 0, 8, 16, ... are test views
FOCAL_PER_WIDTH = 0.875  # focal = 0.875 * width: a 59 degree horizontal field of view
AMBIENT = 0.4  # shading = ambient + (1 - ambient) * max(0, n . light) when lit
HIT_EPSILON = 1e-6  # hits closer than this along a ray are ignored
SHADOW_OFFSET = 1e-4  # shadow rays start this far off the surface
SCENE_FILE = "scene.json"
CHUNK_RAYS = 16384  # rays cast at once (measured fastest: temporaries stay in cache)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


LIGHT_DIRECTION = _unit([-0.45, 0.75, 0.5])  # towards the light: up, left, towards the cameras


@dataclass(frozen=True)
class Preset:
    views: int
    height: int
    width: int
    supersample: int  # s x s rays per pixel, averaged (antialiasing)


PRESETS: dict[str, Preset] = {
    # tests: 16 views at 64 x 48 (views 0, 8 held out); ~0.6 s of CPU to generate
    "small": Preset(views=16, height=48, width=64, supersample=3),
    # `nerf demo`: 25 views at 160 x 120 (views 0, 8, 16, 24 held out); ~2.5 s of CPU
    "demo": Preset(views=25, height=120, width=160, supersample=2),
}


# ----------------------------------------------------------------------------- textures


def _soft_wave(phase: np.ndarray, sharpness: float) -> np.ndarray:
    """A square wave with soft edges in [0, 1]: 0.5 + 0.5 tanh(k sin(phase))."""
    return 0.5 + 0.5 * np.tanh(sharpness * np.sin(phase))


def _mix(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-ray blend of two colours [3] by weight [R] -> [R, 3]."""
    return a[None, :] + (b - a)[None, :] * weight[:, None]


@dataclass
class Texture:
    """A procedural albedo over a surface's 2-D coordinates (s, t), in world units.

    kinds: "backdrop" (soft checker of cell `period` over a smooth colour field), "planks"
    (wood grain across s with a slow wobble), "stripes" (soft stripes of `period` at `angle`),
    "dots" (soft polka dots on a `period` lattice), "bands" (latitude bands on a sphere, where
    s is longitude and t latitude in radians), "plain".
    """

    kind: str
    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (1.0, 1.0, 1.0)
    period: float = 1.0
    angle: float = 0.0  # radians (stripes)
    phase: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def albedo(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Albedo [R, 3] in [0, 1] at surface coordinates s, t [R]."""
        c1 = np.asarray(self.color, dtype=np.float64)
        c2 = np.asarray(self.color2, dtype=np.float64)
        p0, p1, p2 = self.phase
        if self.kind == "backdrop":
            field_rgb = np.stack(
                [
                    np.sin(2.0 * np.pi * s / 5.0 + p0),
                    np.sin(2.0 * np.pi * t / 4.0 + p1),
                    np.sin(2.0 * np.pi * (s + t) / 6.0 + p2),
                ],
                -1,
            )  # [R, 3] smooth colour variation
            base = c1[None, :] + 0.22 * field_rgb
            cell = np.pi / self.period
            checker = 0.5 + 0.5 * np.tanh(3.0 * np.sin(cell * s + p1) * np.sin(cell * t + p2))
            return np.clip(base * (0.62 + 0.38 * checker[:, None]), 0.0, 1.0)
        if self.kind == "planks":
            grain = np.sin(
                2.0 * np.pi * s / self.period + 1.3 * np.sin(2.0 * np.pi * t / 2.1 + p0) + p1
            )
            return np.clip(c1[None, :] * (0.82 + 0.18 * grain[:, None]), 0.0, 1.0)
        if self.kind == "stripes":
            along = s * np.cos(self.angle) + t * np.sin(self.angle)
            return _mix(c1, c2, _soft_wave(2.0 * np.pi * along / self.period + p0, 2.5))
        if self.kind == "dots":
            u = s / self.period + p0 / (2.0 * np.pi)  # lattice coordinates, shifted by phase
            v = t / self.period + p1 / (2.0 * np.pi)
            distance = np.hypot(u - np.round(u), v - np.round(v))  # [R] cells to nearest dot
            weight = np.clip((0.34 - distance) / 0.12, 0.0, 1.0)
            weight = weight * weight * (3.0 - 2.0 * weight)  # smoothstep
            return _mix(c1, c2, weight)
        if self.kind == "bands":
            return _mix(c1, c2, _soft_wave(t * self.period + p0, 1.5))
        if self.kind == "plain":
            return np.broadcast_to(c1, s.shape + (3,)).copy()
        raise ValueError(f"unknown texture kind {self.kind!r}")


# ----------------------------------------------------------------------------- shapes


def _json_vector(v) -> list[float | None]:
    """Floats for JSON; inf (an unbounded extent) becomes null."""
    return [None if not np.isfinite(x) else float(x) for x in np.ravel(v)]


@dataclass
class Plane:
    """A textured rectangle (or an unbounded plane when half_size is inf), two-sided."""

    name: str
    center: np.ndarray  # [3]
    axis_u: np.ndarray  # [3] unit, in the plane (texture s)
    axis_v: np.ndarray  # [3] unit, in the plane (texture t)
    half_size: tuple[float, float]  # extent along axis_u, axis_v; inf for unbounded
    texture: Texture

    @property
    def normal(self) -> np.ndarray:
        return _unit(np.cross(self.axis_u, self.axis_v))

    def hit_distance(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Ray parameter t [R] of the first hit (inf where the ray misses)."""
        normal = self.normal
        denom = directions @ normal  # [R]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((self.center - origins) @ normal) / denom  # [R]
        hit = (np.abs(denom) > 1e-12) & (t > HIT_EPSILON)
        if np.isfinite(self.half_size[0]) or np.isfinite(self.half_size[1]):
            local = origins + np.where(hit, t, 0.0)[:, None] * directions - self.center  # [R, 3]
            hit &= np.abs(local @ self.axis_u) <= self.half_size[0]
            hit &= np.abs(local @ self.axis_v) <= self.half_size[1]
        return np.where(hit, t, np.inf)

    def bounding_sphere(self) -> tuple[np.ndarray, float] | None:
        if not np.isfinite(self.half_size).all():
            return None
        return self.center, float(np.hypot(*self.half_size)) * 1.001

    def shade_inputs(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(outward normal [R, 3], albedo [R, 3]) at surface points [R, 3]."""
        local = points - self.center  # [R, 3]
        albedo = self.texture.albedo(local @ self.axis_u, local @ self.axis_v)
        return np.broadcast_to(self.normal, points.shape).copy(), albedo

    def surface_distance(self, points: np.ndarray) -> np.ndarray:
        """Euclidean distance [R] from points [R, 3] to the (bounded) plane."""
        local = points - self.center
        across = np.abs(local @ self.normal)
        over_u = np.maximum(np.abs(local @ self.axis_u) - self.half_size[0], 0.0)
        over_v = np.maximum(np.abs(local @ self.axis_v) - self.half_size[1], 0.0)
        return np.sqrt(across**2 + over_u**2 + over_v**2)

    def to_json(self) -> dict:
        return {
            "type": "plane",
            "name": self.name,
            "center": _json_vector(self.center),
            "axis_u": _json_vector(self.axis_u),
            "axis_v": _json_vector(self.axis_v),
            "half_size": _json_vector(self.half_size),
            "texture": asdict(self.texture),
        }


@dataclass
class Sphere:
    name: str
    center: np.ndarray  # [3]
    radius: float
    texture: Texture  # s = longitude, t = latitude (radians)

    def hit_distance(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        offset = origins - self.center  # [R, 3]
        a = np.einsum("rc,rc->r", directions, directions)  # [R]
        b = np.einsum("rc,rc->r", offset, directions)  # [R] (half the usual b)
        c = np.einsum("rc,rc->r", offset, offset) - self.radius**2  # [R]
        disc = b * b - a * c  # [R]
        root = np.sqrt(np.maximum(disc, 0.0))
        t_near = (-b - root) / a
        t_far = (-b + root) / a
        t = np.where(t_near > HIT_EPSILON, t_near, t_far)
        return np.where((disc >= 0.0) & (t > HIT_EPSILON), t, np.inf)

    def bounding_sphere(self) -> tuple[np.ndarray, float] | None:
        return None  # the exact test costs as much as a bounding test

    def shade_inputs(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        normal = (points - self.center) / self.radius  # [R, 3]
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        longitude = np.arctan2(normal[:, 0], normal[:, 2])
        latitude = np.arcsin(np.clip(normal[:, 1], -1.0, 1.0))
        return normal, self.texture.albedo(longitude, latitude)

    def surface_distance(self, points: np.ndarray) -> np.ndarray:
        return np.abs(np.linalg.norm(points - self.center, axis=-1) - self.radius)

    def to_json(self) -> dict:
        return {
            "type": "sphere",
            "name": self.name,
            "center": _json_vector(self.center),
            "radius": float(self.radius),
            "texture": asdict(self.texture),
        }


@dataclass
class Box:
    """A rotated box; each face's albedo is the base colour times a per-axis tint."""

    name: str
    center: np.ndarray  # [3]
    half_extent: np.ndarray  # [3] along the box's own axes
    rotation: np.ndarray  # [3, 3] columns = the box's axes in world
    color: tuple[float, float, float]
    face_tint: tuple[float, float, float] = (1.0, 1.12, 0.88)

    def hit_distance(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        local_o = (origins - self.center) @ self.rotation  # [R, 3]
        local_d = directions @ self.rotation  # [R, 3]
        local_d = np.where(np.abs(local_d) < 1e-12, 1e-12, local_d)
        t1 = (-self.half_extent - local_o) / local_d  # [R, 3]
        t2 = (self.half_extent - local_o) / local_d
        t_enter = np.minimum(t1, t2).max(-1)  # [R]
        t_exit = np.maximum(t1, t2).min(-1)
        t = np.where(t_enter > HIT_EPSILON, t_enter, t_exit)
        return np.where((t_exit >= t_enter) & (t > HIT_EPSILON), t, np.inf)

    def bounding_sphere(self) -> tuple[np.ndarray, float] | None:
        return self.center, float(np.linalg.norm(self.half_extent)) * 1.001

    def shade_inputs(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        local = (points - self.center) @ self.rotation / self.half_extent  # [R, 3] in [-1, 1]
        axis = np.argmax(np.abs(local), -1)  # [R] which face
        rows = np.arange(points.shape[0])
        local_normal = np.zeros_like(local)
        local_normal[rows, axis] = np.sign(local[rows, axis])
        normal = local_normal @ self.rotation.T  # [R, 3]
        tint = np.asarray(self.face_tint)[axis]  # [R]
        albedo = np.clip(np.asarray(self.color)[None, :] * tint[:, None], 0.0, 1.0)
        return normal, albedo

    def surface_distance(self, points: np.ndarray) -> np.ndarray:
        q = np.abs((points - self.center) @ self.rotation) - self.half_extent  # [R, 3]
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        inside = np.minimum(q.max(-1), 0.0)
        return np.abs(outside + inside)

    def to_json(self) -> dict:
        return {
            "type": "box",
            "name": self.name,
            "center": _json_vector(self.center),
            "half_extent": _json_vector(self.half_extent),
            "rotation": [_json_vector(row) for row in self.rotation],
            "color": list(self.color),
            "face_tint": list(self.face_tint),
        }


Shape = Plane | Sphere | Box


# ----------------------------------------------------------------------------- ray casting


@dataclass
class Hits:
    """Nearest hits of a bundle of rays [R]."""

    t: np.ndarray  # [R] ray parameter (inf: no hit); z-depth when the camera z of dirs is -1
    shape_index: np.ndarray  # [R] index into SceneSpec.shapes (-1: no hit)
    rgb: np.ndarray  # [R, 3] shaded colour in [0, 1]


def _bounding_candidates(
    shape: Shape, origins: np.ndarray, directions: np.ndarray, ray_terms: RayTerms
) -> np.ndarray | None:
    """Rows [P] of the rays that pass through the shape's bounding sphere (None: unbounded)."""
    bound = shape.bounding_sphere()
    if bound is None:
        return None
    center, radius = bound
    # With w = center - origin: w.d = c.d - o.d and |w|^2 = |c|^2 - 2 c.o + |o|^2, so each
    # shape costs two matrix-vector products instead of a fresh [R, 3] difference.
    along = directions @ center - ray_terms.origin_dot_direction  # [R]
    dist_sq = center @ center - 2.0 * (origins @ center) + ray_terms.origin_sq  # [R]
    radius_sq = radius * radius
    misses = dist_sq * ray_terms.direction_sq - along * along > radius_sq * ray_terms.direction_sq
    misses |= (along < 0) & (dist_sq > radius_sq)  # the sphere is behind the origin
    return np.nonzero(~misses)[0]


@dataclass
class RayTerms:
    """Per-ray dot products shared by the bounding tests of every shape."""

    origin_dot_direction: np.ndarray  # [R]
    origin_sq: np.ndarray  # [R]
    direction_sq: np.ndarray  # [R]

    @classmethod
    def of(cls, origins: np.ndarray, directions: np.ndarray) -> RayTerms:
        return cls(
            origin_dot_direction=np.einsum("rc,rc->r", origins, directions),
            origin_sq=np.einsum("rc,rc->r", origins, origins),
            direction_sq=np.einsum("rc,rc->r", directions, directions),
        )


@dataclass
class SceneSpec:
    """The shapes and the light; `cast` is the whole renderer."""

    shapes: list[Shape]
    light_direction: np.ndarray = field(default_factory=lambda: LIGHT_DIRECTION.copy())
    ambient: float = AMBIENT

    def nearest(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(t [R], shape index [R]) of the first surface along each ray; inf / -1 on a miss.

        Ties go to the earlier shape. Bounded shapes are only tested on the rays that pass
        through their bounding sphere.
        """
        best_t = np.full(origins.shape[0], np.inf)  # [R]
        best_index = np.full(origins.shape[0], -1)  # [R]
        terms = RayTerms.of(origins, directions)
        for k, shape in enumerate(self.shapes):
            rows = _bounding_candidates(shape, origins, directions, terms)
            if rows is None:
                t = shape.hit_distance(origins, directions)  # [R]
                closer = t < best_t
                best_t[closer] = t[closer]
                best_index[closer] = k
                continue
            t = shape.hit_distance(origins[rows], directions[rows])  # [P]
            closer = t < best_t[rows]
            best_t[rows[closer]] = t[closer]
            best_index[rows[closer]] = k
        return best_t, best_index

    def occluded(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """[R] True where any shape lies along the ray (shadow test).

        Unbounded planes whose normal points towards the light are skipped: they face the
        scene (every other shape and the cameras lie on their normal side), so they can shade
        nothing that a camera sees.
        """
        blocked = np.zeros(origins.shape[0], dtype=bool)
        terms = RayTerms.of(origins, directions)
        for shape in self.shapes:
            if (
                isinstance(shape, Plane)
                and not np.isfinite(shape.half_size).any()
                and shape.normal @ self.light_direction > 0
            ):
                continue
            rows = _bounding_candidates(shape, origins, directions, terms)
            rows = np.arange(origins.shape[0]) if rows is None else rows
            rows = rows[~blocked[rows]]
            if rows.size:
                hit = np.isfinite(shape.hit_distance(origins[rows], directions[rows]))  # [P]
                blocked[rows[hit]] = True
        return blocked

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> Hits:
        """Trace rays: origins, directions [R, 3] (directions need not be unit)."""
        origins = np.ascontiguousarray(origins, dtype=np.float64)
        directions = np.ascontiguousarray(directions, dtype=np.float64)
        t, index = self.nearest(origins, directions)
        hit_rows = np.nonzero(index >= 0)[0]
        points = origins[hit_rows] + t[hit_rows, None] * directions[hit_rows]  # [P, 3]
        normal = np.zeros_like(points)  # [P, 3]
        albedo = np.zeros_like(points)  # [P, 3]
        for k, shape in enumerate(self.shapes):
            mine = np.nonzero(index[hit_rows] == k)[0]
            if mine.size:
                normal[mine], albedo[mine] = shape.shade_inputs(points[mine])
        facing = np.einsum("pc,pc->p", normal, directions[hit_rows])  # [P]
        normal *= np.where(facing > 0, -1.0, 1.0)[:, None]  # two-sided: face the viewer
        lambert = np.maximum(normal @ self.light_direction, 0.0)  # [P]
        lit = np.nonzero(lambert > 0)[0]
        start = points[lit] + SHADOW_OFFSET * normal[lit]  # [L, 3]
        towards = np.broadcast_to(self.light_direction, start.shape)
        lambert[lit[self.occluded(start, towards)]] = 0.0
        shading = self.ambient + (1.0 - self.ambient) * lambert  # [P]
        rgb = np.zeros(origins.shape, dtype=np.float64)  # [R, 3] black where nothing is hit
        rgb[hit_rows] = albedo * shading[:, None]
        return Hits(t=t, shape_index=index, rgb=np.clip(rgb, 0.0, 1.0))

    def surface_distance(self, points: np.ndarray) -> np.ndarray:
        """[R] distance from each point [R, 3] to the nearest surface of the scene."""
        return np.stack([s.surface_distance(points) for s in self.shapes], 0).min(0)

    def to_json(self) -> dict:
        return {
            "light_direction": _json_vector(self.light_direction),
            "ambient": self.ambient,
            "shapes": [s.to_json() for s in self.shapes],
        }


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


def scene_spec(seed: int = 0) -> SceneSpec:
    """The still life for `seed`: positions, colours and texture phases vary a little."""
    rng = np.random.default_rng([seed, 1])  # its own stream: cameras never shift the objects

    def jitter(scale: float) -> np.ndarray:
        return rng.uniform(-scale, scale, 3)

    def color(rgb) -> tuple[float, float, float]:
        return tuple(float(x) for x in np.clip(np.asarray(rgb) + rng.uniform(-0.05, 0.05, 3), 0, 1))

    def phase() -> tuple[float, float, float]:
        return tuple(float(x) for x in rng.uniform(0.0, 2.0 * np.pi, 3))

    x_axis, y_axis, z_axis = np.eye(3)
    shapes: list[Shape] = [
        Plane(
            "backdrop",
            center=np.array([0.0, 0.0, -BACKDROP_DEPTH]),
            axis_u=x_axis,
            axis_v=y_axis,
            half_size=(np.inf, np.inf),
            texture=Texture("backdrop", color((0.55, 0.6, 0.68)), period=0.6, phase=phase()),
        ),
        Plane(
            "floor",
            center=np.array([0.0, FLOOR_HEIGHT, -4.0]),
            axis_u=x_axis,
            axis_v=-z_axis,  # normal = u x v = +y
            half_size=(np.inf, np.inf),
            texture=Texture("planks", color((0.66, 0.48, 0.32)), period=0.45, phase=phase()),
        ),
    ]
    # A card standing on the floor, turned about y by `yaw` and leaning back by `pitch`.
    for name, center, half, yaw, pitch, texture in (
        (
            "card_stripes",
            np.array([-1.05, FLOOR_HEIGHT + 0.8, -4.5]),
            (0.5, 0.8),
            0.45,
            0.0,
            Texture(
                "stripes",
                color((0.92, 0.85, 0.45)),
                color((0.25, 0.45, 0.7)),
                period=0.32,
                angle=0.7,
                phase=phase(),
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
                color((0.9, 0.9, 0.86)),
                color((0.75, 0.2, 0.35)),
                period=0.26,
                phase=phase(),
            ),
        ),
    ):
        rotation = _rotation_y(yaw + rng.uniform(-0.05, 0.05)) @ _rotation_x(pitch)
        shapes.append(
            Plane(
                name,
                center=center + jitter(0.06) * np.array([1.0, 0.0, 1.0]),
                axis_u=rotation @ x_axis,
                axis_v=rotation @ y_axis,
                half_size=half,
                texture=texture,
            )
        )
    for name, center, radius, texture in (
        (
            "sphere_banded",
            np.array([0.25, 0.0, -3.9]),
            0.45,
            Texture(
                "bands",
                color((0.9, 0.45, 0.2)),
                color((0.95, 0.8, 0.5)),
                period=6.0,
                phase=phase(),
            ),
        ),
        (
            "sphere_plain",
            np.array([-0.55, 0.0, -2.9]),
            0.28,
            Texture("plain", color((0.2, 0.35, 0.8))),
        ),
    ):
        center = center + jitter(0.06) * np.array([1.0, 0.0, 1.0])
        center[1] = FLOOR_HEIGHT + radius  # resting on the floor
        shapes.append(Sphere(name, center=center, radius=radius, texture=texture))
    half = np.array([0.3, 0.3, 0.3])
    shapes.append(
        Box(
            "box",
            center=np.array([-0.45, FLOOR_HEIGHT + 0.3, -5.2]) + jitter(0.06) * [1.0, 0.0, 1.0],
            half_extent=half,
            rotation=_rotation_y(0.6 + rng.uniform(-0.1, 0.1)),
            color=color((0.3, 0.68, 0.38)),
        )
    )
    return SceneSpec(shapes=shapes)


# ----------------------------------------------------------------------------- cameras


def grid_shape(num_views: int) -> tuple[int, int]:
    """(rows, columns) of the capture grid: 16 -> 4 x 4, 20 -> 4 x 5, 25 -> 5 x 5."""
    rows = max(1, int(np.floor(np.sqrt(num_views))))
    return rows, int(np.ceil(num_views / rows))


def view_order(num_views: int, rows: int, columns: int) -> list[tuple[int, int]]:
    """Grid cell (row, column) of each view, in file order.

    The held-out views (0, 8, 16, ... with the default llffhold) are put on interior cells
    spread over the grid, so evaluation interpolates between training views instead of
    extrapolating past the edge of the capture (whose borders no other view sees).
    """
    cells = [(r, c) for r in range(rows) for c in range(columns)][:num_views]
    test_slots = list(range(0, num_views, LLFFHOLD))
    interior = [(r, c) for r, c in cells if 0 < r < rows - 1 and 0 < c < columns - 1]
    if len(interior) < len(test_slots):
        return cells
    picks = np.round(np.linspace(0, len(interior) - 1, len(test_slots))).astype(int)
    test_cells = [interior[k] for k in picks]
    rest = iter([cell for cell in cells if cell not in test_cells])
    test_iter = iter(test_cells)
    return [next(test_iter) if k in test_slots else next(rest) for k in range(num_views)]


def make_cameras(
    num_views: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Camera-to-world poses [N, 3, 4] ([right, up, back] columns) and their grid cells.

    Positions: a grid 1.2 wide and 0.8 tall in the plane z = 0, jittered by a few hundredths;
    each camera looks at a point on the backdrop near (0, 0, -6) (a mild toe-in, as a hand-held
    capture pointing at its subject) and is then turned by a random rotation of about one degree.
    """
    rows, columns = grid_shape(num_views)
    xs = np.linspace(-0.6, 0.6, columns) if columns > 1 else np.zeros(1)
    ys = np.linspace(0.4, -0.4, rows) if rows > 1 else np.zeros(1)
    cells = view_order(num_views, rows, columns)
    poses = []
    for row, column in cells:
        position = np.array([xs[column], ys[row], 0.0]) + rng.normal(0.0, [0.03, 0.03, 0.04])
        target = np.array([0.0, -0.2, -BACKDROP_DEPTH]) + rng.normal(0.0, 0.15, 3)
        back = _unit(position - target)
        right = _unit(np.cross([0.0, 1.0, 0.0], back))
        up = np.cross(back, right)
        rotation = np.stack([right, up, back], 1) @ _axis_angle(rng.normal(0.0, 0.015, 3))
        poses.append(np.concatenate([rotation, position[:, None]], 1))
    return np.stack(poses, 0), cells


def training_to_stored_axes(c2w: np.ndarray) -> np.ndarray:
    """[N, 3, 4] columns [right, up, back, t] -> stored LLFF [down, right, back, t]."""
    return np.concatenate([-c2w[:, :, 1:2], c2w[:, :, 0:1], c2w[:, :, 2:4]], 2)


# ----------------------------------------------------------------------------- rendering


def pixel_rays(
    c2w: np.ndarray, height: int, width: int, focal: float, offsets: tuple[float, float] = (0, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """World rays (origins, directions) [H*W, 3] through pixel (i + dx, j + dy), nerfcli.data.rays
    convention: camera direction [(i - W/2) / f, -(j - H/2) / f, -1], c2w [3, 4] [right, up, back]."""
    cols, rows = np.meshgrid(
        np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
    )
    dirs = np.stack(
        [
            (cols.ravel() + offsets[0] - 0.5 * width) / focal,
            -(rows.ravel() + offsets[1] - 0.5 * height) / focal,
            -np.ones(height * width),
        ],
        -1,
    )  # [H*W, 3]
    directions = dirs @ c2w[:3, :3].T
    origins = np.broadcast_to(c2w[:3, 3], directions.shape)
    return origins, directions


def render_view(
    spec: SceneSpec, c2w: np.ndarray, height: int, width: int, focal: float, supersample: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb [H, W, 3] float in [0, 1], z-depth [H, W] of the pixel-centre rays) of one camera."""
    steps = (np.arange(supersample) + 0.5) / supersample - 0.5  # sub-pixel offsets
    offsets = [(dx, dy) for dy in steps for dx in steps]
    averaged = len(offsets)
    if (0.0, 0.0) not in offsets:
        offsets.append((0.0, 0.0))  # even supersampling: the centre ray only carries the depth
    rays = [pixel_rays(c2w, height, width, focal, offset) for offset in offsets]
    origins = np.concatenate([o for o, _ in rays])  # [K*H*W, 3]
    directions = np.concatenate([d for _, d in rays])
    t = np.empty(origins.shape[0])  # [K*H*W]
    rgb = np.empty(origins.shape)  # [K*H*W, 3]
    for start in range(0, origins.shape[0], CHUNK_RAYS):  # chunks keep temporaries in cache
        chunk = slice(start, start + CHUNK_RAYS)
        hits = spec.cast(origins[chunk], directions[chunk])
        t[chunk], rgb[chunk] = hits.t, hits.rgb
    pixels = height * width
    center = offsets.index((0.0, 0.0))
    depth = t[center * pixels : (center + 1) * pixels]  # camera z of the directions is -1
    color = rgb[: averaged * pixels].reshape(averaged, height, width, 3).mean(0)
    return color, depth.reshape(height, width)


# ----------------------------------------------------------------------------- the scene folder


@dataclass
class SynthInfo:
    """What make_scene wrote."""

    path: Path
    preset: str
    seed: int
    num_views: int
    height: int
    width: int
    focal: float
    supersample: int
    near: float  # smallest near bound over the views
    far: float  # largest far bound
    depth_min: float  # true depth range over all pixels
    depth_max: float
    test_views: list[int]  # held out by the default llffhold (8)
    seconds: float  # wall time to render and write

    def to_dict(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


def _preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown scene preset {name!r}; choose one of: {', '.join(PRESETS)}"
        ) from None


def _check_size(name: str, value: int, low: int, high: int) -> int:
    if not low <= int(value) <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return int(value)


def _looks_generated(folder: Path) -> bool:
    try:
        meta = json.loads((folder / SCENE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR


def _check_target(out_dir: Path, force: bool) -> None:
    """Refuse to replace anything but an empty folder or (with force) a generated scene."""
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir()):
        return
    if not force:
        raise NerfError(
            f"{out_dir}: already exists and is not empty; pass --force to replace it or choose "
            "another folder"
        )
    if out_dir.is_symlink() or not out_dir.is_dir() or not _looks_generated(out_dir):
        raise NerfError(
            f"{out_dir}: exists and is not a generated scene (no {SCENE_FILE} from {GENERATOR}); "
            "--force only replaces generated scenes, so remove it yourself or choose another folder"
        )


def _swap_into_place(built: Path, out_dir: Path) -> None:
    """Rename the finished folder onto out_dir; an old scene there is removed only afterwards."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.replace(built, out_dir)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
    os.replace(out_dir, retired / out_dir.name)
    try:
        os.replace(built, out_dir)
    except OSError:
        os.replace(retired / out_dir.name, out_dir)  # put the old scene back
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def make_scene(
    out_dir: str | Path,
    preset: str = "small",
    seed: int = 0,
    views: int | None = None,
    height: int | None = None,
    width: int | None = None,
    force: bool = False,
    on_view: Callable[[int, int], None] | None = None,
) -> SynthInfo:
    """Render the generated capture into out_dir (LLFF layout); see the module docstring.

    `views`, `height`, `width` override the preset (focal is 0.875 * width). The folder is built
    beside out_dir and renamed into place; an existing non-empty out_dir is refused unless
    `force`, and even then only a previously generated scene is replaced. `on_view(done, total)`
    is called after each view (progress).
    """
    import imageio.v3 as iio

    started = time.perf_counter()
    chosen = _preset(preset)
    num_views = _check_size("views", chosen.views if views is None else views, 2, 400)
    height = _check_size("height", chosen.height if height is None else height, 8, 2048)
    width = _check_size("width", chosen.width if width is None else width, 8, 2048)
    focal = FOCAL_PER_WIDTH * width
    supersample = chosen.supersample

    out_dir = Path(out_dir)
    _check_target(out_dir, force)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build.", dir=out_dir.parent))
        os.chmod(build, 0o777 & ~current_umask())  # mkdtemp makes it private; the scene is not
    except OSError as exc:
        raise NerfError(
            f"{out_dir}: cannot create the scene folder ({exc.strerror or exc})"
        ) from None

    spec = scene_spec(seed)
    c2w, cells = make_cameras(num_views, np.random.default_rng([seed, 2]))
    try:
        (build / "images").mkdir()
        (build / "depth").mkdir()
        bounds = np.zeros((num_views, 2))
        depth_range = [np.inf, -np.inf]
        names = []
        for k in range(num_views):
            rgb, depth = render_view(spec, c2w[k], height, width, focal, supersample)
            name = f"image{k:03d}"
            names.append(name + ".png")
            iio.imwrite(build / "images" / f"{name}.png", np.round(rgb * 255.0).astype(np.uint8))
            np.save(build / "depth" / f"{name}.npy", depth.astype(np.float32))
            bounds[k] = 0.9 * depth.min(), 1.1 * depth.max()
            depth_range = [min(depth_range[0], depth.min()), max(depth_range[1], depth.max())]
            if on_view is not None:
                on_view(k + 1, num_views)
        hwf = np.broadcast_to(np.array([height, width, focal], dtype=np.float64), (num_views, 3))
        stored = np.concatenate([training_to_stored_axes(c2w), hwf[:, :, None]], 2)  # [N, 3, 5]
        np.save(build / "poses_bounds.npy", np.concatenate([stored.reshape(-1, 15), bounds], 1))
        test_views = list(range(0, num_views, LLFFHOLD))
        meta = {
            "generator": GENERATOR,
            "version": GENERATOR_VERSION,
            "preset": preset,
            "seed": int(seed),
            "views": num_views,
            "height": height,
            "width": width,
            "focal": focal,
            "supersample": supersample,
            "depth": "z-depth of the pixel-centre ray (distance along the viewing axis)",
            "pose_convention": "poses_bounds.npy rotation columns [down, right, back]",
            "test_views": test_views,
            "cameras": [
                {"image": name, "grid_row": int(r), "grid_column": int(c)}
                for name, (r, c) in zip(names, cells, strict=True)
            ],
            **spec.to_json(),
        }
        (build / SCENE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        _swap_into_place(build, out_dir)
    except OSError as exc:
        raise NerfError(f"{out_dir}: cannot write the scene ({exc.strerror or exc})") from None
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return SynthInfo(
        path=out_dir,
        preset=preset,
        seed=int(seed),
        num_views=num_views,
        height=height,
        width=width,
        focal=float(focal),
        supersample=supersample,
        near=float(bounds[:, 0].min()),
        far=float(bounds[:, 1].max()),
        depth_min=float(depth_range[0]),
        depth_max=float(depth_range[1]),
        test_views=test_views,
        seconds=round(time.perf_counter() - started, 3),
    )


def load_spec(scene_dir: str | Path) -> SceneSpec:
    """The SceneSpec of a generated scene folder (rebuilt from the seed in its scene.json)."""
    path = Path(scene_dir) / SCENE_FILE
    try:
        meta = json.loads(path.read_text())
        seed = int(meta["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        raise NerfError(
            f"{path}: not a generated scene description; regenerate with `nerf make-scene`"
        ) from None
    return scene_spec(seed)


# ----------------------------------------------------------------------------- depth error


@dataclass(frozen=True)
class DepthError:
    """Depth error over the valid pixels; also readable as error["abs_rel"]."""

    abs_rel: float  # mean |pred - gt| / gt
    rmse: float  # sqrt(mean (pred - gt)^2), in the units of the depths
    valid_pixels: int

    def __getitem__(self, key: str) -> float | int:
        return getattr(self, key)

    def to_dict(self) -> dict:
        return asdict(self)


def depth_error(pred_depth, gt_depth) -> DepthError:
    """Compare a predicted depth map with the ground truth, over pixels where both are finite
    and the ground truth is positive.

    Both must be z-depth (distance along the camera's viewing axis) in the same units. Scene.depths
    is in the stored world units; a depth rendered in the loader's frame must be divided by
    Scene.scale first (bd_factor rescale; recentering does not change lengths). A depth rendered
    in NDC is not metric: the NDC ray parameter t in [0, 1] maps back to z-depth near / (1 - t)
    (near = 1 in the rescaled frame) for a camera aligned with the average pose.
    Accepts numpy arrays or torch tensors of the same shape, e.g. [H, W] or [N, H, W].
    Returns NaNs and valid_pixels = 0 when no pixel is valid.
    """
    pred = _to_numpy(pred_depth)
    gt = _to_numpy(gt_depth)
    if pred.shape != gt.shape:
        raise ValueError(f"depth shapes differ: predicted {pred.shape}, ground truth {gt.shape}")
    valid = np.isfinite(pred) & np.isfinite(gt) & (gt > 0)
    count = int(valid.sum())
    if count == 0:
        return DepthError(abs_rel=float("nan"), rmse=float("nan"), valid_pixels=0)
    diff = pred[valid] - gt[valid]
    return DepthError(
        abs_rel=float(np.mean(np.abs(diff) / gt[valid])),
        rmse=float(np.sqrt(np.mean(diff**2))),
        valid_pixels=count,
    )


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)
