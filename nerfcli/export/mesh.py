"""`nerf export mesh`: marching cubes on the model's density over a box, vertex colours from
the field looking along the surface normal, optional vertex-clustering decimation.

Marching cubes is PyMCubes (`mcubes`, in the `export` extra: a 0.3 MB wheel of C++ over numpy,
with scipy as its one dependency), a maintained implementation used by nerf-pytorch's and
instant-ngp's mesh scripts; scikit-image's would bring a much larger package for one function.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError
from nerfcli.export.field_query import colour_at, density_at, outward_normals
from nerfcli.export.region import MarchRegion, training_to_ray_torch

# Bytes per grid vertex while marching: the float32 density grid, the float64 copy marching
# cubes reads, and a slab of query points; plus per surface vertex (about 6 R^2 on a busy
# surface) positions, normals, colours and faces in float64.
BYTES_PER_VOXEL = 4 + 8 + 1
BYTES_PER_SURFACE_VERTEX = 8 * 3 * 4 + 8 * 3 * 2
SURFACE_VERTICES_PER_R2 = 6


@dataclass
class Mesh:
    vertices: np.ndarray  # [V, 3] training frame
    faces: np.ndarray  # [F, 3] int64
    normals: np.ndarray  # [V, 3] outward, training frame
    colours: np.ndarray  # [V, 3] uint8


def memory_estimate(resolution: int) -> int:
    """Bytes `extract_mesh` needs at `resolution` vertices per axis (an upper estimate)."""
    surface = SURFACE_VERTICES_PER_R2 * resolution**2 * BYTES_PER_SURFACE_VERTEX
    return BYTES_PER_VOXEL * resolution**3 + surface


def available_memory() -> int | None:
    """Bytes the kernel reports available (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(resolution: int, available: int | None = None) -> int:
    """The estimate, or a one-line NerfError when it exceeds the memory available."""
    need = memory_estimate(resolution)
    available = available_memory() if available is None else available
    if available is not None and need > available:
        fits = int((available / BYTES_PER_VOXEL) ** (1 / 3) * 0.9)
        raise NerfError(
            f"--resolution {resolution} needs about {need / 1e9:.1f} GB ({resolution}^3 density "
            f"grid), {available / 1e9:.1f} GB is available: use --resolution {fits} or less"
        )
    return need


def grid_axes(region: MarchRegion, resolution: int) -> list[np.ndarray]:
    """Sample positions [R] on each axis of the region, equal spacing, the longest axis with
    `resolution` vertices (cubic voxels)."""
    size = region.hi - region.lo
    step = float(size.max()) / (resolution - 1)
    counts = [max(2, int(math.ceil(s / step)) + 1) for s in size]
    return [region.lo[a] + step * np.arange(counts[a]) for a in range(3)]


def density_grid(
    model, region: MarchRegion, axes: list[np.ndarray], on_slab: Callable[[], None] | None = None
) -> np.ndarray:
    """Density [Rx, Ry, Rz] float32 at the grid vertices, one x slab at a time."""
    ys, zs = np.meshgrid(axes[1], axes[2], indexing="ij")  # [Ry, Rz]
    grid = np.empty([len(a) for a in axes], dtype=np.float32)
    for index, x in enumerate(axes[0]):
        slab = np.stack([np.full_like(ys, x), ys, zs], -1).reshape(-1, 3)  # [Ry*Rz, 3]
        grid[index] = density_at(model, region.to_ray(slab)).numpy().reshape(ys.shape)
        if on_slab is not None:
            on_slab()
    return grid


def default_level(model, scene: Scene) -> float:
    """The density at which one render sample of the model is half opaque (alpha 0.5):
    ln 2 / the sample spacing (TensoRF: its box step; NeRF: (far - near) / samples)."""
    if model.name == "tensorf":
        step = model.field.mask_step()
    else:
        step = (scene.far - scene.near) / max(1, model.cfg.n_samples)
    return math.log(2.0) / step


def marching_cubes(
    grid: np.ndarray, level: float, region: MarchRegion, axes: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [V, 3] in march space and faces [F, 3] (outward winding) of the level set."""
    try:
        import mcubes
    except ImportError:
        raise NerfError(
            "nerf export mesh needs PyMCubes: pip install 'nerfcli[export]' (or PyMCubes)"
        ) from None

    top = float(grid.max()) if grid.size else 0.0
    if not top > level:
        raise NerfError(
            f"no surface: the density stays below the level {level:.3g} in the box "
            f"{np.round(region.lo, 3).tolist()}..{np.round(region.hi, 3).tolist()} (largest "
            f"{top:.3g}); lower --level (e.g. --level {top / 2:.3g}) or move --bbox"
        )
    vertices, faces = mcubes.marching_cubes(grid.astype(np.float64), float(level))
    if len(faces) == 0:
        raise NerfError(
            "no surface: marching cubes found no triangles; lower --level or move --bbox"
        )
    step = np.array([a[1] - a[0] for a in axes])
    return region.lo + vertices * step, faces.astype(np.int64)


def decimate(vertices: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering: vertices within one cell of size `cell` merge into their mean;
    triangles that collapse are dropped, duplicates kept once."""
    keys = np.floor(vertices / cell).astype(np.int64)  # [V, 3]
    _, cluster, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    cluster = cluster.reshape(-1)
    merged = np.zeros((len(counts), 3))
    np.add.at(merged, cluster, vertices)
    merged /= counts[:, None]
    new_faces = cluster[faces]  # [F, 3]
    keep = (
        (new_faces[:, 0] != new_faces[:, 1])
        & (new_faces[:, 1] != new_faces[:, 2])
        & (new_faces[:, 0] != new_faces[:, 2])
    )
    new_faces = new_faces[keep]
    _, first = np.unique(np.sort(new_faces, axis=1), axis=0, return_index=True)
    new_faces = new_faces[np.sort(first)]
    used = np.unique(new_faces)
    remap = np.full(len(merged), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return merged[used], remap[new_faces]


def shade_vertices(model, scene: Scene, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward normals [V, 3] from the density gradient and colours [V, 3] uint8 from the
    field seen along -normal (a camera looking straight at the surface), training frame."""
    to_ray = training_to_ray_torch(scene)
    normals = outward_normals(model, vertices, to_ray)  # [V, 3]
    rgb = colour_at(model, vertices, -normals, to_ray)  # [V, 3]
    colours = np.clip(np.round(rgb.numpy() * 255.0), 0, 255).astype(np.uint8)
    return normals.numpy().astype(np.float64), colours


def orient_faces(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Faces [F, 3] wound so their normal agrees with the mean of their vertex normals (a map
    that flips handedness, such as NDC's, reverses marching cubes' winding)."""
    if len(faces) == 0:
        return faces
    corners = vertices[faces]  # [F, 3, 3]
    face_normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    flip = (face_normal * normals[faces].sum(1)).sum(-1) < 0  # [F]
    out = faces.copy()
    out[flip] = out[flip][:, ::-1]
    return out
