"""The box marching cubes runs over, in "march space", and the maps from march space to the
model's ray space and on to the training frame.

- box scenes: the scene box (the model's grid box) in the training frame;
- forward-facing (NDC) scenes: the model's NDC box cut to what the images see (x, y in
  [-1, 1]) and at the farthest depth bound of the views (NDC z -> 1 is infinity);
- unbounded scenes whose model contracts space: a crop box in the contracted grid cube
  ([-1, 1]^3 holds all of space), by default around the region the cameras look at.
`--bbox` is given in the model's ray space (NDC for forward-facing scenes, else the training
frame) and, with a contraction, contracted into the grid cube.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError
from nerfcli.export.frames import ndc_to_training
from nerfcli.models.base import RadianceModel
from nerfcli.render.contraction import uncontract


@dataclass
class MarchRegion:
    lo: np.ndarray  # [3] march-space corner
    hi: np.ndarray  # [3]
    space: str  # "training", "ndc" or "contracted"
    to_ray: Callable[[np.ndarray], np.ndarray]  # march space [P, 3] -> ray space [P, 3]
    to_training: Callable[[np.ndarray], np.ndarray]  # ray space [P, 3] -> training frame


# The NDC box ends this many times the farthest depth bound of the views away.
FAR_MARGIN = 1.1


def _identity(points: np.ndarray) -> np.ndarray:
    return points


def cameras_focus(scene: Scene) -> tuple[np.ndarray, float]:
    """The point nearest (least squares) to the training cameras' optical axes, and half the
    median camera distance to it: the region the cameras look at (training frame)."""
    views = scene.i_train or list(range(scene.num_views))
    c2w = np.asarray(scene.c2w[views], np.float64)  # [N, 3, 4]
    origins, axes = c2w[:, :, 3], -c2w[:, :, 2]  # the cameras look down -z
    axes = axes / np.linalg.norm(axes, axis=-1, keepdims=True)
    projector = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]  # [N, 3, 3]
    lhs, rhs = projector.sum(0), np.einsum("nij,nj->i", projector, origins)
    if np.linalg.cond(lhs) > 1e8:  # parallel axes: the mean of the cameras
        focus = origins.mean(0)
    else:
        focus = np.linalg.solve(lhs, rhs)
    return focus, 0.5 * float(np.median(np.linalg.norm(origins - focus, axis=-1)))


def _model_box(model: RadianceModel) -> np.ndarray | None:
    aabb = getattr(getattr(model, "field", None), "aabb", None)  # TensoRF's box
    return None if aabb is None else aabb.detach().cpu().numpy().astype(np.float64)


def _contracted_region(model, box: np.ndarray, scene: Scene) -> MarchRegion:
    corners = np.stack(np.meshgrid(*box.T, indexing="ij"), -1).reshape(-1, 3)  # [8, 3]
    grid = model.field.normalize(torch.as_tensor(corners, dtype=torch.float32)).numpy()
    aabb = model.field.aabb.detach().cpu().numpy().astype(np.float64)
    kind = model.cfg.contraction

    def to_ray(points: np.ndarray) -> np.ndarray:
        box_coords = uncontract(torch.as_tensor(2.0 * points), kind).numpy()
        return aabb[0] + (box_coords + 1.0) * (aabb[1] - aabb[0]) / 2.0

    lo, hi = grid.min(0).astype(np.float64), grid.max(0).astype(np.float64)
    return MarchRegion(
        np.clip(lo, -0.999, 0.999), np.clip(hi, -0.999, 0.999), "contracted", to_ray, _identity
    )


def march_region(model: RadianceModel, scene: Scene, bbox: list[float] | None) -> MarchRegion:
    """Where to march (see the module docstring); NerfError for an empty box."""
    box = None if bbox is None else np.asarray(bbox, np.float64).reshape(2, 3)
    if box is not None and not (box[1] > box[0]).all():
        raise NerfError(f"--bbox {list(bbox)}: empty crop box, need x0 < x1, y0 < y1, z0 < z1")
    model_box = _model_box(model)
    if getattr(getattr(model, "field", None), "contracted", False):  # TensoRF's grid
        if box is None:
            focus, half = cameras_focus(scene)
            box = np.stack([focus - half, focus + half])
        return _contracted_region(model, box, scene)
    if box is None:
        box = model_box if model_box is not None else np.asarray(scene.scene_box, np.float64)
        if box is None:  # a classic NeRF without a scene box: the cameras' region
            focus, half = cameras_focus(scene)
            box = np.stack([focus - half, focus + half])
        if scene.ndc:  # what the images see: NDC x, y in [-1, 1], z up to the far bound
            far = float(np.max(scene.bounds[:, 1])) * FAR_MARGIN  # past it NDC z -> infinity
            box = box.copy()
            box[0, :2], box[1, :2] = np.maximum(box[0, :2], -1.0), np.minimum(box[1, :2], 1.0)
            box[1, 2] = min(box[1, 2], 1.0 - 2.0 / max(far, 1.0 + 1e-3))
    elif model_box is not None:
        inter_lo, inter_hi = np.maximum(box[0], model_box[0]), np.minimum(box[1], model_box[1])
        if not (inter_hi > inter_lo).all():
            raise NerfError(
                f"--bbox {list(bbox)} does not meet the model's box {model_box.tolist()}: "
                "nothing to export there"
            )
        box = np.stack([inter_lo, inter_hi])
    if scene.ndc:
        return MarchRegion(box[0], box[1], "ndc", _identity, lambda p: ndc_to_training(scene, p))
    return MarchRegion(box[0], box[1], "training", _identity, _identity)


def training_to_ray_torch(scene: Scene) -> Callable[[torch.Tensor], torch.Tensor]:
    """Training-frame points [P, 3] -> the model's ray space, differentiable (for gradients
    taken in the training frame)."""
    if not scene.ndc:
        return lambda points: points
    first = scene.i_train[0] if scene.i_train else 0
    focal = float(scene.K[first][0, 0])

    def to_ndc(points: torch.Tensor) -> torch.Tensor:
        z = torch.clamp(points[:, 2], max=-1e-6)
        x = -2.0 * focal / scene.width * points[:, 0] / z
        y = -2.0 * focal / scene.height * points[:, 1] / z
        return torch.stack([x, y, 1.0 + 2.0 / z], -1)

    return to_ndc
