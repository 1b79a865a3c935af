"""The ray caster: nearest hits over all shapes, Lambertian shading and hard shadows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nerfcli.data.synthetic.shapes import Plane, Shape, _json_vector, _unit

AMBIENT = 0.4  # shading = ambient + (1 - ambient) * max(0, n . light) when lit
SHADOW_OFFSET = 1e-4  # shadow rays start this far off the surface
LIGHT_DIRECTION = _unit([-0.45, 0.75, 0.5])  # towards the light: up, left, towards the cameras


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
