"""Which coordinates an export is written in, and the maps between the model's space and them.

Three spaces meet here:
- the model's ray space: NDC for forward-facing scenes (`scene.ndc`), else the training frame;
- the training frame: the Scene's world, where `c2w` lives;
- the capture's own coordinates ("capture"): the world of the capture's files (poses_bounds.npy,
  a COLMAP model, transforms.json), which `world_from_file` maps to the training frame.

`file_from_training` is the one function that knows how the Scene records that transform, so
a change of record (a checkpoint's frame plan) only has to touch it.
"""

from __future__ import annotations

import numpy as np

from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError

FRAMES = ("capture", "training")


def file_from_training(scene: Scene) -> np.ndarray:
    """[4, 4] float64: the training frame -> the capture files' world coordinates (the inverse
    of the Scene's `world_from_file`)."""
    world_from_file = np.asarray(scene.world_from_file, dtype=np.float64)
    try:
        return np.linalg.inv(world_from_file)
    except np.linalg.LinAlgError:
        raise NerfError(
            f"{scene.root}: the checkpoint's world_from_file is not invertible; export with "
            "--frame training"
        ) from None


def output_transform(scene: Scene, frame: str) -> np.ndarray:
    """[4, 4]: the training frame -> the frame the export is written in."""
    if frame not in FRAMES:
        raise NerfError(f"--frame must be one of {', '.join(FRAMES)}, got {frame!r}")
    return file_from_training(scene) if frame == "capture" else np.eye(4)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points [P, 3] through an affine [4, 4] -> [P, 3] float64."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def transform_normals(matrix: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Unit normals [P, 3] through an affine [4, 4] (inverse transpose), renormalised."""
    linear = np.linalg.inv(matrix[:3, :3]).T
    out = np.asarray(normals, dtype=np.float64) @ linear.T
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


def transform_poses(matrix: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world [N, 3, 4] (training frame) -> [N, 4, 4] in the output frame; the
    rotation columns are renormalised, so a similarity with a scale still gives rotations."""
    out = np.tile(np.eye(4), (len(c2w), 1, 1))
    rotation = np.einsum("ij,njk->nik", matrix[:3, :3], np.asarray(c2w, np.float64)[:, :, :3])
    out[:, :3, :3] = rotation / np.linalg.norm(rotation, axis=1, keepdims=True)
    out[:, :3, 3] = transform_points(matrix, np.asarray(c2w, np.float64)[:, :, 3])
    return out


def frame_scale(matrix: np.ndarray) -> float:
    """Output units per training unit of an affine [4, 4] (the cube root of its volume
    change)."""
    return float(np.cbrt(abs(np.linalg.det(matrix[:3, :3]))))


def frame_description(scene: Scene, frame: str) -> str:
    """One line recorded in every file written: which coordinates it is in."""
    if frame == "capture":
        return f"capture coordinates of {scene.format} scene {scene.root} (world_from_file undone)"
    return f"nerfcli training frame of {scene.format} scene {scene.root}"


def ndc_to_training(scene: Scene, points: np.ndarray) -> np.ndarray:
    """NDC points [P, 3] of a forward-facing scene -> training-frame points [P, 3] (the inverse
    of nerfcli.data.rays.ndc_rays with near = 1 and the first training view's focal and image
    size, as every NDC ray of the scene uses)."""
    first = scene.i_train[0] if scene.i_train else 0
    focal = float(scene.K[first][0, 0])
    points = np.asarray(points, dtype=np.float64)
    z = 2.0 / np.minimum(points[:, 2] - 1.0, -1e-9)  # world z (near = 1)
    x = -points[:, 0] * z * scene.width / (2.0 * focal)
    y = -points[:, 1] * z * scene.height / (2.0 * focal)
    return np.stack([x, y, z], -1)


def training_to_ndc(scene: Scene, points: np.ndarray) -> np.ndarray:
    """Training-frame points [P, 3] (z < 0) -> NDC points [P, 3]: ndc_to_training's inverse."""
    first = scene.i_train[0] if scene.i_train else 0
    focal = float(scene.K[first][0, 0])
    points = np.asarray(points, dtype=np.float64)
    z = np.minimum(points[:, 2], -1e-9)
    x = -2.0 * focal / scene.width * points[:, 0] / z
    y = -2.0 * focal / scene.height * points[:, 1] / z
    return np.stack([x, y, 1.0 + 2.0 / z], -1)
