"""Depth against ground truth: a rendered expected ray depth back to camera z-depth in the
capture's stored units, and the error statistics that `nerf eval` reports (and tests check)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from nerfcli.data.cameras import Camera
from nerfcli.data.rays import camera_rays


def camera_depth(camera: Camera, t: torch.Tensor, scale: float) -> torch.Tensor:
    """Expected ray depth t [H, W] of `camera` -> z-depth along its viewing axis, in stored
    units: NDC t is mapped back to the world point first; `scale` is the scene's training
    units per stored unit (LLFF: the bd_factor rescale times the spherified frame's scale)."""
    height, width = t.shape
    c2w = torch.as_tensor(camera.c2w, dtype=torch.float32, device=t.device)
    if camera.ndc:
        rays = camera_rays(camera, device=t.device)
        p = rays.origins + t[..., None] * rays.directions  # [H, W, 3] in NDC
        z = 2.0 / torch.clamp(p[..., 2] - 1.0, max=-1e-6)  # world z (near = 1)
        x = -p[..., 0] * z * width / (2.0 * camera.focal)
        y = -p[..., 1] * z * height / (2.0 * camera.focal)
        world = torch.stack([x, y, z], -1)
        depth = -((world - c2w[:3, 3]) @ c2w[:3, 2])  # [H, W]
    else:
        depth = t  # camera-frame directions have z = -1, so t is already the z-depth
    return depth / scale


@dataclass
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
    """Compare a predicted z-depth map with the ground truth (same units, same shape, numpy or
    torch), over pixels where both are finite and the ground truth is positive. Returns NaNs
    and valid_pixels = 0 when no pixel is valid."""
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
