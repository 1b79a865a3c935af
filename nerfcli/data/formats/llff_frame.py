"""The LLFF format's reference frame, as nerf-pytorch's `load_llff_data` computes it: the
axis fix, the bd_factor rescale, recentring, and either the spiral render path or the
spherified poses with their circle path (data.llff.spherify), in float32 as the reference
does so numbers compare exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nerfcli.data.cameras import circle_path, normalize, recenter_poses, spiral_path, to_homogeneous
from nerfcli.data.formats.poses_bounds import PosesBounds
from nerfcli.errors import DataError


def stored_to_training_axes(poses: np.ndarray) -> np.ndarray:
    """[N,3,5] stored [down, right, back] -> [N,3,4] c2w with columns [right, up, back]."""
    return np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], 2)


# Spherified poses put the cameras on a sphere of radius about 1 around the object.
SPHERIFY_BOX = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], dtype=np.float32)


def spherify_poses(
    c2w: np.ndarray, bounds: np.ndarray, frames: int = 120
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """LLFF's spherify: centre on the point closest to all optical axes, scale to unit radius.

    Returns (poses [N,3,4], circle path [F,3,4], bounds [N,2], transform [4,4] applied to poses
    including the scale).
    """
    rays_d = c2w[:, :3, 2:3]
    rays_o = c2w[:, :3, 3:4]
    a_i = np.eye(3) - rays_d * np.transpose(rays_d, [0, 2, 1])
    b_i = -a_i @ rays_o
    center = np.squeeze(-np.linalg.inv((np.transpose(a_i, [0, 2, 1]) @ a_i).mean(0)) @ b_i.mean(0))
    up = (c2w[:, :3, 3] - center).mean(0)
    vec0 = normalize(up)
    vec1 = normalize(np.cross([0.1, 0.2, 0.3], vec0))
    vec2 = normalize(np.cross(vec0, vec1))
    frame = np.stack([vec1, vec2, vec0, center], 1)
    inv = np.linalg.inv(to_homogeneous(frame))
    reset = (inv @ to_homogeneous(c2w))[:, :3, :4]
    rad = np.sqrt(np.mean(np.sum(np.square(reset[:, :3, 3]), -1)))
    sc = 1.0 / rad
    reset[:, :3, 3] *= sc
    bounds = bounds * sc
    rad *= sc
    transform = np.diag([sc, sc, sc, 1.0]) @ inv
    return reset, circle_path(reset, frames, rad), bounds, transform


def reference_geometry(pb, bd_factor, recenter, spherify, render_frames, ndc) -> dict:
    """The Scene fields of nerf-pytorch's frame (NDC, no-NDC, or spherified)."""
    frame = training_frame(pb, bd_factor, recenter, spherify, render_frames)
    bounds = frame.bounds
    near, far = (0.0, 1.0) if ndc else (float(bounds.min() * 0.9), float(bounds.max()))
    linear = frame.world_from_file[:3, :3]
    return {
        "c2w": frame.c2w,
        "near": near,
        "far": far,
        "bounds": bounds,
        "render_poses": frame.render_poses,
        "render_path": "circle" if spherify else "spiral",
        "ndc": ndc,
        "frame": "spherified" if spherify else "reference",
        "scene_box": SPHERIFY_BOX.copy() if spherify and not ndc else None,
        "world_from_file": frame.world_from_file,
        "scale": float(np.cbrt(abs(np.linalg.det(linear)))),
        "facts": {"bd_scale": frame.bd_scale, "focus_depth": frame.focus_depth},
    }


@dataclass
class TrainingFrame:
    c2w: np.ndarray  # [N, 3, 4] float32
    bounds: np.ndarray  # [N, 2] float32
    render_poses: np.ndarray  # [F, 3, 4] float32
    world_from_file: np.ndarray  # [4, 4] float64: recenter/spherify after the bd rescale
    bd_scale: float  # the bd_factor rescale alone
    focus_depth: float | None  # spiral focus depth (None when spherified)


def training_frame(
    pb: PosesBounds, bd_factor: float | None, recenter: bool, spherify: bool, render_frames: int
) -> TrainingFrame:
    """load_llff_data's pose maths: axis fix, bd_factor rescale, recentre, spherify or spiral."""
    # The reference does this arithmetic in float32; so do we, so numbers compare exactly.
    with np.errstate(over="ignore"):
        c2w = stored_to_training_axes(pb.poses).astype(np.float32)
        bounds = pb.bounds.astype(np.float32)
    if not (np.isfinite(bounds).all() and (bounds > 0).all()):
        raise DataError(
            f"{pb.path}: depth bounds {pb.bounds.min():g}..{pb.bounds.max():g} do not fit in "
            "float32 (about 1e-38..3e38); rescale the capture"
        )
    scale = 1.0 if not bd_factor or bd_factor <= 0 else 1.0 / (float(bounds.min()) * bd_factor)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught below
        c2w[:, :3, 3] *= scale
        bounds = bounds * np.float32(scale)
    transform = np.eye(4)
    if recenter:
        with np.errstate(divide="ignore", invalid="ignore"):
            try:
                c2w, transform = recenter_poses(c2w)
            except np.linalg.LinAlgError:
                c2w = np.full_like(c2w, np.nan)
    focus = None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if spherify:
            try:
                c2w, render_poses, bounds, sph = spherify_poses(c2w, bounds, render_frames)
            except np.linalg.LinAlgError:
                render_poses = np.full((render_frames, 3, 4), np.nan)
            else:
                transform = sph @ transform
        else:
            render_poses, focus = spiral_path(c2w, bounds, render_frames)
    # Checked as stored (float32): spherify's float64 scale can leave values that overflow it.
    with np.errstate(over="ignore", invalid="ignore"):
        c2w = c2w.astype(np.float32)
        bounds = np.asarray(bounds).astype(np.float32)
        render_poses = render_poses.astype(np.float32)
    finite = np.isfinite(c2w).all() and np.isfinite(render_poses).all()
    if not (finite and np.isfinite(bounds).all() and (bounds > 0).all()):
        hint = (
            "the optical axes do not meet, or the capture's scale is extreme (a forward-facing "
            "capture?); drop --spherify"
            if spherify
            else "the cameras' mean viewing direction or up vector is degenerate"
        )
        raise DataError(f"{pb.path}: cannot bring the poses into the training frame: {hint}")
    world_from_file = transform.astype(np.float64) @ np.diag([scale, scale, scale, 1.0])
    return TrainingFrame(c2w, bounds, render_poses, world_from_file, float(scale), focus)
