"""LLFF captures that walk around their subject, as unbounded (or object) scenes.

nerf-pytorch's frame (bd_factor rescale, recentre on the mean pose, then NDC or spherify) is the
reference for forward-facing captures and stays in `llff.py`. A walk-around capture trained
with a contracted (unbounded) model wants a different frame, the one `transforms.json` captures
get (nerfcli.data.orbit.normalisation):

- centre: the focus point of the optical axes (the least-squares point nearest every camera's
  viewing axis: the subject; the mean camera centre when that is ill-posed or behind most
  cameras), moved to the origin;
- scale: the mean camera distance from it becomes CAMERA_RADIUS = 1;
- rotation: the capture's up (`orbit.world_up`: the cameras' mean up vector, or the normal of
  the plane they walk in when the photos are turned on their side, as cup's) becomes +z (the
  smallest rotation that does it), so the table a subject stands on lies about parallel to the
  xy-plane of the model's grid;
- `world_from_file` [4, 4] = that rotation @ scale @ translation, mapping the file's world
  coordinates (COLMAP's, as poses_bounds.npy stores them) to the training frame;
- `scene_box` [2, 3]: the cube of half-size the largest camera distance (at least 1), so it
  holds every camera and the subject; the model contracts everything outside it;
- near = 0.9 x the smallest depth bound (nerf-pytorch's no-NDC rule), far = the largest depth
  bound or the cube's diagonal 2 sqrt(3) half, whichever is larger (rays from a camera inside
  the cube then reach past its far side), both in training units;
- render path: the orbit fitted to the camera centres, looking at the origin (the focus point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nerfcli.data.cameras import capture_kind, view_spread_deg
from nerfcli.data.formats.poses_bounds import PosesBounds
from nerfcli.data.orbit import normalisation, orbit_path, world_up
from nerfcli.errors import DataError

CAMERA_RADIUS = 1.0  # mean camera distance from the focus point in the training frame
UP = np.array([0.0, 0.0, 1.0])  # where the capture's up points after the rotation
NEAR_MARGIN = 0.9  # near = NEAR_MARGIN x the smallest depth bound (nerf-pytorch's no-NDC near)


@dataclass
class UnboundedFrame:
    c2w: np.ndarray  # [N, 3, 4] float32, training frame, columns [right, up, back, centre]
    bounds: np.ndarray  # [N, 2] float32, training units
    render_poses: np.ndarray  # [F, 3, 4] float32, the orbit
    world_from_file: np.ndarray  # [4, 4] float64
    scale: float  # training units per file unit
    half: float  # scene_box half-size
    near: float
    far: float
    focus: np.ndarray  # [3] the focus point in the file's frame
    method: str  # "focus" or "mean" (see orbit.normalisation)

    @property
    def scene_box(self) -> np.ndarray:
        return np.array([[-self.half] * 3, [self.half] * 3], dtype=np.float32)  # [2, 3]


def rotation_to_up(up: np.ndarray) -> np.ndarray:
    """The smallest rotation [3, 3] taking the direction `up` [3] to UP (+z), by Rodrigues'
    formula; `up` opposite to UP: half a turn about x. A zero `up`: the identity."""
    norm = float(np.linalg.norm(up))
    if not norm > 1e-12:
        return np.eye(3)
    u = np.asarray(up, dtype=np.float64) / norm
    axis = np.cross(u, UP)  # [3], |axis| = sin(angle)
    cos = float(u @ UP)
    if cos < -1.0 + 1e-12:
        return np.diag([1.0, -1.0, -1.0])
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + cos)


def file_c2w(pb: PosesBounds) -> np.ndarray:
    """[N, 3, 4] float64 camera-to-world in the file's world frame, columns [right, up, back,
    centre] (the stored [down, right, back] columns reordered, the world untouched)."""
    poses = pb.poses.astype(np.float64)
    return np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], 2)


def classify(pb: PosesBounds) -> tuple[str, float]:
    """(capture kind "forward-facing" or "surround", the views' spread in degrees)."""
    c2w = file_c2w(pb)
    return capture_kind(c2w), view_spread_deg(c2w)


def unbounded_frame(pb: PosesBounds, render_frames: int) -> UnboundedFrame:
    """The training frame of a walk-around LLFF capture (see the module docstring)."""
    c2w = file_c2w(pb)  # [N, 3, 4]
    norm = normalisation(c2w, str(pb.path))
    scale = norm.scale * CAMERA_RADIUS
    rotation = rotation_to_up(world_up(c2w))  # [3, 3]
    world_from_file = np.eye(4)
    world_from_file[:3, :3] = scale * rotation
    world_from_file[:3, 3] = -scale * rotation @ norm.focus
    out = np.empty_like(c2w)
    out[:, :, :3] = rotation @ c2w[:, :, :3]
    out[:, :, 3] = (world_from_file[:3, :3] @ c2w[:, :, 3].T).T + world_from_file[:3, 3]
    bounds = pb.bounds.astype(np.float64) * scale  # [N, 2]
    half = max(float(np.linalg.norm(out[:, :, 3], axis=1).max()), CAMERA_RADIUS)
    near = NEAR_MARGIN * float(bounds.min())
    far = max(float(bounds.max()), 2.0 * math.sqrt(3.0) * half)
    render_poses = orbit_path(out, np.zeros(3), render_frames)
    values = (out, bounds, render_poses, world_from_file)
    if not (all(np.isfinite(v).all() for v in values) and 0 < near < far < math.inf):
        raise DataError(
            f"{pb.path}: cannot bring the poses into a frame around the subject (camera "
            "positions or depth bounds out of range); pass --scene-type forward"
        )
    return UnboundedFrame(
        c2w=out.astype(np.float32),
        bounds=bounds.astype(np.float32),
        render_poses=render_poses.astype(np.float32),
        world_from_file=world_from_file,
        scale=float(scale),
        half=half,
        near=near,
        far=far,
        focus=norm.focus,
        method=norm.method,
    )


__all__ = ["CAMERA_RADIUS", "UnboundedFrame", "classify", "rotation_to_up", "unbounded_frame"]
