"""Which parts of an exported mesh the training views see: a vertex is kept when some training
view has its median depth (nerfcli.export.surface) at the vertex, within a fraction of the
depth. What no view sees there is not constrained by the photos: fog in front of a surface
(every view looks through it: its median depth lies behind), density behind a surface or
below the floor (hidden), so the mesh keeps the surfaces the photos show.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from nerfcli.data.rays import camera_rays
from nerfcli.data.scene import Scene
from nerfcli.export.frames import ndc_to_training
from nerfcli.export.surface import rays_in_chunks

# Pixels per view the visibility test renders at most (lego's 400 x 400 views at 1/4): the
# median depths (of the pixels the vertices fall on) are the costly part of the export.
SEEN_PIXELS = 16384


def auto_downscale(scene: Scene) -> int:
    """The smallest integer downscale that brings a view to SEEN_PIXELS pixels or fewer."""
    return max(1, math.ceil(math.sqrt(scene.height * scene.width / SEEN_PIXELS)))


def median_depths(
    model, scene: Scene, camera, pixels: np.ndarray, chunk: int, device
) -> np.ndarray:
    """Median camera depth [K] in the training frame of the camera's pixels at flat indices
    [K] (row * width + column); NaN where the pixel meets no density."""
    rays = camera_rays(camera, device=device).reshape(-1)[torch.as_tensor(pixels).to(device)]
    t, _, _ = rays_in_chunks(model, rays, camera.near, camera.far, chunk)  # [K]
    points = (rays.origins.cpu() + t[:, None] * rays.directions.cpu()).numpy()  # ray space
    if scene.ndc:
        with np.errstate(invalid="ignore", divide="ignore"):
            points = ndc_to_training(scene, points)
    c2w = np.asarray(camera.c2w, np.float64)
    return -((points - c2w[:, 3]) @ c2w[:, 2])  # [K] along the viewing axis


def project(camera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel rows [P], columns [P] (int, nearest pixel) and camera depths [P] of training-frame
    points [P, 3] in a pinhole camera (OpenGL axes, the camera looks down -z)."""
    c2w = np.asarray(camera.c2w, np.float64)
    local = (points - c2w[:, 3]) @ c2w[:, :3]  # [P, 3]
    depth = -local[:, 2]
    K = np.asarray(camera.K, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * local[:, 0] / depth + K[0, 2]
        v = -K[1, 1] * local[:, 1] / depth + K[1, 2]
    offset = camera.pixel_center
    columns = np.floor(np.nan_to_num(u - offset + 0.5, nan=-1.0, posinf=-1, neginf=-1))
    rows = np.floor(np.nan_to_num(v - offset + 0.5, nan=-1.0, posinf=-1, neginf=-1))
    return rows.astype(np.int64), columns.astype(np.int64), depth


def seen_by_views(
    model,
    scene: Scene,
    points: np.ndarray,  # [P, 3] training frame
    tolerance: float,
    downscale: int,
    chunk: int,
    device,
    on_view: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """[P] bool: some training view's median depth at the point's pixel is within `tolerance`
    times that depth of the point's own depth."""
    views = scene.i_train or list(range(scene.num_views))
    seen = np.zeros(len(points), bool)
    for done, view in enumerate(views, 1):
        camera = scene.camera(view).downscaled(downscale)
        rows, columns, depth = project(camera, points)
        inside = (depth > 0) & (rows >= 0) & (rows < camera.height)
        inside &= (columns >= 0) & (columns < camera.width)
        index = np.nonzero(inside & ~seen)[0]  # [I] only the pixels these points fall on
        pixels, which = np.unique(rows[index] * camera.width + columns[index], return_inverse=True)
        with torch.no_grad():
            surface = median_depths(model, scene, camera, pixels, chunk, device)[which]  # [I]
        with np.errstate(invalid="ignore"):
            near = np.abs(depth[index] - surface) <= tolerance * surface
        seen[index[near]] = True
        if on_view is not None:
            on_view(done, len(views))
    return seen


def keep_vertices(faces: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The faces [F', 3] whose three vertices are kept, renumbered over the vertices still
    used, and the indices [V'] of those vertices in the old numbering."""
    faces = faces[keep[faces].all(-1)]
    used = np.unique(faces)
    remap = np.full(len(keep), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return remap[faces], used
