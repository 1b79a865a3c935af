"""`nerf export points`: a coloured point cloud from the rendered depth of the training views.

Each training view is rendered (at 1/downscale); every pixel whose opacity passes the threshold
gives the point at its expected depth t / opacity along its ray (`depth="median"`: where half
of the ray's opacity is reached, nerfcli.export.surface; floaters do not pull it, but on the
generated scene it lay 3x farther from the true surfaces than the expected depth once the
model was trained: bench/README.md), coloured by the rendered colour; the normals are the density gradient's there (nerfcli.export.field_query). The pixels
are drawn at random, the same count from every view, up to `num_points` in all.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from nerfcli.data.rays import camera_rays
from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError
from nerfcli.export.field_query import outward_normals
from nerfcli.export.frames import ndc_to_training
from nerfcli.export.region import FAR_MARGIN, training_to_ray_torch
from nerfcli.export.surface import rays_in_chunks
from nerfcli.render.image import render_view


def depth_edges(depth: np.ndarray, tolerance: float) -> np.ndarray:
    """[H, W] bool: pixels whose 3 x 3 neighbourhood spans more than `tolerance` times their
    own camera depth (an object's outline, where the expected depth lies between the object
    and what is behind it); all False when tolerance <= 0."""
    if tolerance <= 0:
        return np.zeros(depth.shape, bool)
    image = torch.from_numpy(np.nan_to_num(depth, nan=0.0, posinf=1e30))[None, None]
    high = torch.nn.functional.max_pool2d(image, 3, 1, 1)[0, 0].numpy()
    low = -torch.nn.functional.max_pool2d(-image, 3, 1, 1)[0, 0].numpy()
    return (high - low) > tolerance * np.abs(depth)


def view_points(
    model,
    scene: Scene,
    view: int,
    chunk: int,
    device,
    downscale: int,
    min_opacity: float,
    edge_tolerance: float = 0.0,
    depth: str = "expected",
) -> tuple[np.ndarray, np.ndarray]:
    """Training-frame points [P, 3] and colours [P, 3] in [0, 1] of one view's opaque pixels
    (off depth edges, see depth_edges), at their median (or expected) depth."""

    def render_fn(rays, near, far):
        return model.render_rays(rays, near, far, train=False)

    camera = scene.camera(view).downscaled(downscale)
    out = render_view(render_fn, camera, chunk, device)  # [H, W, ...]
    rays = camera_rays(camera, device=device).reshape(-1)  # [H*W]
    keep = (out.opacity >= min_opacity).reshape(-1).cpu().numpy()  # [H*W]
    if depth == "median":
        t = torch.full((len(rays),), float("nan"))  # [H*W]
        chosen = torch.as_tensor(np.nonzero(keep)[0])
        t[chosen] = rays_in_chunks(model, rays[chosen.to(device)], camera.near, camera.far, chunk)[
            0
        ]
    else:
        t = (out.depth / out.opacity.clamp(min=1e-6)).reshape(-1).cpu()  # [H*W]
    t = t.to(rays.origins.device)[:, None]  # [H*W, 1]
    points = (rays.origins + t * rays.directions).cpu().numpy()  # [H*W, 3] ray space
    if scene.ndc:
        keep &= points[:, 2] < 1.0 - 1e-4  # NDC z = 1 is infinitely far
        points = ndc_to_training(scene, points)
    points = points.astype(np.float64)
    c2w = np.asarray(camera.c2w, np.float64)
    camera_depth = -((points - c2w[:, 3]) @ c2w[:, 2]).reshape(camera.height, camera.width)
    keep &= ~depth_edges(camera_depth, edge_tolerance).reshape(-1) & np.isfinite(points).all(-1)
    if scene.ndc:  # NDC rays run to infinity: past the far bound (as the region) no surface
        with np.errstate(invalid="ignore"):
            keep &= camera_depth.reshape(-1) <= FAR_MARGIN * float(scene.bounds[view, 1])
    return points[keep], out.rgb.reshape(-1, 3).cpu().numpy()[keep]


def point_cloud(
    model,
    scene: Scene,
    num_points: int,
    chunk: int,
    device,
    downscale: int = 1,
    min_opacity: float = 0.5,
    edge_tolerance: float = 0.0,
    depth: str = "expected",
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
        points, colours = view_points(
            model, scene, view, chunk, device, downscale, min_opacity, edge_tolerance, depth
        )
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
