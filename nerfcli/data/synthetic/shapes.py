"""Procedural textures and the three analytic shapes (plane, sphere, box) of the generated scene.

Each shape answers the ray caster's questions: where a ray first hits it, a bounding sphere for
cheap rejection, the outward normal and albedo at a surface point, and its JSON description.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

HIT_EPSILON = 1e-6  # hits closer than this along a ray are ignored
NOISE_WAVES = 20  # plane waves summed by the "noise" texture
NOISE_OCTAVES = 3.0  # its wavelengths run from `period` to 2**3 * `period`


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# ----------------------------------------------------------------------------- textures


def _soft_wave(phase: np.ndarray, sharpness: float) -> np.ndarray:
    """A square wave with soft edges in [0, 1]: 0.5 + 0.5 tanh(k sin(phase))."""
    return 0.5 + 0.5 * np.tanh(sharpness * np.sin(phase))


def _mix(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-ray blend of two colours [3] by weight [R] -> [R, 3]."""
    return a[None, :] + (b - a)[None, :] * weight[:, None]


def _noise_field(s: np.ndarray, t: np.ndarray, seed: int, period: float) -> np.ndarray:
    """A smooth random field [R] of unit variance: NOISE_WAVES plane waves of random direction,
    phase and wavelength (log-uniform over NOISE_OCTAVES from `period`), fixed by `seed`."""
    rng = np.random.default_rng([seed, 7])
    angle = rng.uniform(0.0, 2.0 * np.pi, NOISE_WAVES)  # [K]
    wavelength = period * 2.0 ** rng.uniform(0.0, NOISE_OCTAVES, NOISE_WAVES)  # [K]
    offset = rng.uniform(0.0, 2.0 * np.pi, NOISE_WAVES)  # [K]
    amplitude = np.sqrt(wavelength / period)  # [K] coarse waves a little stronger
    amplitude /= np.sqrt(0.5 * np.sum(amplitude**2))  # unit variance
    k = 2.0 * np.pi / wavelength  # [K]
    arg = np.outer(s, k * np.cos(angle)) + np.outer(t, k * np.sin(angle)) + offset  # [R, K]
    return np.sin(arg) @ amplitude


@dataclass
class Texture:
    """A procedural albedo over a surface's 2-D coordinates (s, t), in world units.

    kinds: "backdrop" (soft checker of cell `period` over a smooth colour field), "planks"
    (wood grain across s with a slow wobble), "stripes" (soft stripes of `period` at `angle`),
    "dots" (soft polka dots on a `period` lattice), "bands" (latitude bands on a sphere, where
    s is longitude and t latitude in radians), "plain", "noise" (a non-repeating blotchy
    pattern of `color` and `color2` from `seed`, with detail from `period` to 8 x `period`:
    plenty of distinct corners and blobs for SIFT, unlike the periodic kinds).
    """

    kind: str
    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (1.0, 1.0, 1.0)
    period: float = 1.0
    angle: float = 0.0  # radians (stripes)
    phase: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seed: int = 0  # noise

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
        if self.kind == "noise":
            weight = 0.5 + 0.5 * np.tanh(1.6 * _noise_field(s, t, self.seed, self.period))
            return _mix(c1, c2, weight)
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
