"""`nerf export points`: a coloured point cloud from the rendered depth of the training views.

Each training view is rendered (at 1/downscale); every pixel whose opacity passes the threshold
gives the point at its expected depth t / opacity along its ray, coloured by the rendered
colour; the normals are the density gradient's there (nerfcli.export.field_query). The pixels
are drawn at random, the same count from every view, up to `num_points` in all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nerfcli.data.rays import camera_rays
from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError
from nerfcli.export.field_query import outward_normals
from nerfcli.export.frames import ndc_to_training
from nerfcli.export.region import training_to_ray_torch
from nerfcli.render.image import render_view


def view_points(
    model, scene: Scene, view: int, chunk: int, device, downscale: int, min_opacity: float
) -> tuple[np.ndarray, np.ndarray]:
    """Training-frame points [P, 3] and colours [P, 3] in [0, 1] of one view's opaque pixels."""

    def render_fn(rays, near, far):
        return model.render_rays(rays, near, far, train=False)

    camera = scene.camera(view).downscaled(downscale)
    out = render_view(render_fn, camera, chunk, device)  # [H, W, ...]
    keep = (out.opacity >= min_opacity).reshape(-1)  # [H*W]
    rays = camera_rays(camera, device=device).reshape(-1)
    t = (out.depth / out.opacity.clamp(min=1e-6)).reshape(-1, 1)[keep]  # [P, 1]
    points = (rays.origins[keep] + t * rays.directions[keep]).cpu().numpy()  # ray space
    if scene.ndc:
        inside = points[:, 2] < 1.0 - 1e-4  # NDC z = 1 is infinitely far
        points, keep_rgb = points[inside], out.rgb.reshape(-1, 3)[keep].cpu().numpy()[inside]
        return ndc_to_training(scene, points), keep_rgb
    return points.astype(np.float64), out.rgb.reshape(-1, 3)[keep].cpu().numpy()


def point_cloud(
    model,
    scene: Scene,
    num_points: int,
    chunk: int,
    device,
    downscale: int = 1,
    min_opacity: float = 0.5,
    seed: int = 0,
    on_view: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points [P, 3], outward normals [P, 3] (training frame) and colours [P, 3] uint8 from
    every training view, at most `num_points` (an equal share drawn from each view)."""
    views = scene.i_train or list(range(scene.num_views))
    share = int(np.ceil(num_points / len(views)))
    generator = np.random.default_rng(seed)
    all_points, all_colours = [], []
    for done, view in enumerate(views, 1):
        points, colours = view_points(model, scene, view, chunk, device, downscale, min_opacity)
        if len(points) > share:
            pick = generator.choice(len(points), share, replace=False)
            points, colours = points[pick], colours[pick]
        all_points.append(points)
        all_colours.append(colours)
        if on_view is not None:
            on_view(done, len(views))
    points = np.concatenate(all_points)[:num_points]
    colours = np.concatenate(all_colours)[:num_points]
    if len(points) == 0:
        raise NerfError(
            f"no points: no pixel of the {len(views)} training views reaches opacity "
            f"{min_opacity}; lower --min-opacity"
        )
    normals = outward_normals(model, points, training_to_ray_torch(scene)).numpy()
    colours = np.clip(np.round(colours * 255.0), 0, 255).astype(np.uint8)
    return points, normals.astype(np.float64), colours
