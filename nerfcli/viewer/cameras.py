"""The browser's camera <-> nerfcli's: viser gives a camera-to-world rotation (w, x, y, z) and
position in OpenCV axes (x right, y down, z forward), a vertical fov in radians and the
window's aspect; nerfcli's poses are OpenGL ([right, up, back])."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nerfcli.data.cameras import Camera, quaternion_from_rotation, rotation_from_quaternion
from nerfcli.data.scene import Scene
from nerfcli.evaluation.camera_path import camera_from_fov

OPENCV_FROM_OPENGL = np.diag([1.0, -1.0, -1.0])  # flips y and z, its own inverse


@dataclass(frozen=True)
class ViewPose:
    """One browser camera: c2w [3, 4] (OpenGL, training frame), vertical fov in radians and
    aspect (width / height)."""

    c2w: tuple  # 12 floats, row-major [3, 4] (hashable, so equal poses compare equal)
    fov: float
    aspect: float

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.c2w, np.float64).reshape(3, 4)


def pose_from_browser(wxyz, position, fov: float, aspect: float) -> ViewPose:
    rotation = rotation_from_quaternion(np.asarray(wxyz, np.float64)) @ OPENCV_FROM_OPENGL
    c2w = np.concatenate([rotation, np.asarray(position, np.float64).reshape(3, 1)], 1)
    return ViewPose(tuple(round(float(v), 9) for v in c2w.reshape(-1)), float(fov), float(aspect))


def browser_from_pose(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz [4], position [3]) of an OpenGL camera-to-world [3, 4], for the browser."""
    c2w = np.asarray(c2w, np.float64)
    return quaternion_from_rotation(c2w[:3, :3] @ OPENCV_FROM_OPENGL), c2w[:3, 3].copy()


def view_camera(scene: Scene, view: ViewPose, height: int) -> Camera:
    """The camera of a browser view at `height` rows (width from its aspect), bounded as the
    scene's render cameras are (NDC, near, far)."""
    width = max(1, int(round(height * view.aspect)))
    focal = 0.5 * height / math.tan(0.5 * view.fov)
    base = scene.path_camera(view.matrix.astype(np.float32))
    return camera_from_fov(base, height, width, focal)


def scene_vertical_fov(scene: Scene) -> float:
    """The capture's vertical field of view in radians (the page starts with it)."""
    camera = scene.path_camera(scene.render_poses[0])
    return 2.0 * math.atan(0.5 * camera.height / float(camera.K[1, 1]))
