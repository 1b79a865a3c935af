"""A COLMAP model -> nerfstudio-style `transforms.json`, following nerfstudio's colmap_to_json.

- Camera axes: COLMAP's c2w columns [right, down, forward] become OpenGL's [right, up, back]
  (the y and z columns negated).
- World axes: nerfstudio then swaps world y and z and negates the new z (rows [x, z, -y]), so
  COLMAP's usual "y down" world becomes "z up" for its viewer. That transform is recorded as
  `applied_transform` (3 x 4), as nerfstudio does, so a loader can map poses back to the
  COLMAP model's frame: c2w_colmap_world = inverse(applied) @ c2w.
- Intrinsics: fl_x, fl_y, cx, cy, w, h with k1 k2 p1 p2 and camera_model "OPENCV" (nerfstudio's
  name for every pinhole model); at the top level for one shared camera, per frame otherwise.
  cx, cy keep COLMAP's pixel convention (pixel centres at +0.5), as transforms.json expects.
- file_path: relative to the folder of transforms.json, frames in image-name order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from nerfcli.data.formats.colmap import colmap_c2w
from nerfcli.data.formats.colmap_model import Camera, ColmapModel
from nerfcli.errors import DataError

# Rows [x, z, -y] of the world: nerfstudio's `applied_transform` for COLMAP models.
APPLIED_TRANSFORM = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0]]
)  # [3, 4]

# (fx, fy, cx, cy, k1, k2, p1, p2) slots in COLMAP's parameter order; None reads as 0.
_PARAM_SLOTS = {
    "SIMPLE_PINHOLE": (0, 0, 1, 2, None, None, None, None),
    "PINHOLE": (0, 1, 2, 3, None, None, None, None),
    "SIMPLE_RADIAL": (0, 0, 1, 2, 3, None, None, None),
    "RADIAL": (0, 0, 1, 2, 3, 4, None, None),
    "OPENCV": (0, 1, 2, 3, 4, 5, 6, 7),
}
_KEYS = ("fl_x", "fl_y", "cx", "cy", "k1", "k2", "p1", "p2")


def camera_params(camera: Camera) -> dict:
    """transforms.json intrinsics of one COLMAP camera."""
    slots = _PARAM_SLOTS.get(camera.model)
    if slots is None:
        raise DataError(
            f"camera {camera.camera_id} uses {camera.model}; transforms.json is written for "
            f"{', '.join(_PARAM_SLOTS)} only"
        )
    out: dict = {"w": int(camera.width), "h": int(camera.height)}
    for key, slot in zip(_KEYS, slots, strict=True):
        out[key] = 0.0 if slot is None else float(camera.params[slot])
    out["camera_model"] = "OPENCV"
    return out


def opengl_c2w(colmap_c2w_34: np.ndarray) -> np.ndarray:
    """[3, 4] COLMAP c2w -> [4, 4] nerfstudio transform_matrix (OpenGL camera axes, world rows
    permuted by APPLIED_TRANSFORM)."""
    c2w = np.eye(4)
    c2w[:3, :4] = colmap_c2w_34
    c2w[0:3, 1:3] *= -1.0  # camera [right, down, forward] -> [right, up, back]
    return np.concatenate([APPLIED_TRANSFORM @ c2w, [[0.0, 0.0, 0.0, 1.0]]], 0)


def transforms_doc(model: ColmapModel, image_prefix: str = "images") -> dict:
    """The transforms.json document of a model whose photos lie in `image_prefix`/."""
    cameras = {camera.camera_id: camera for camera in model.cameras}
    images = sorted(model.images, key=lambda image: image.name)
    if not images:
        raise DataError(f"{model.path}: the model has no registered images")
    used = sorted({image.camera_id for image in images})
    shared = len(used) == 1
    doc: dict = camera_params(cameras[used[0]]) if shared else {}
    frames = []
    for image in images:
        frame = {
            "file_path": f"{image_prefix}/{image.name}" if image_prefix else image.name,
            "transform_matrix": opengl_c2w(colmap_c2w(image)).tolist(),
            "colmap_im_id": int(image.image_id),
        }
        if not shared:
            frame.update(camera_params(cameras[image.camera_id]))
        frames.append(frame)
    doc["frames"] = frames
    doc["applied_transform"] = APPLIED_TRANSFORM.tolist()
    return doc


def image_prefix(image_dir: Path, transforms_dir: Path) -> str:
    """The photo folder as file_path writes it: relative to the folder of transforms.json."""
    prefix = Path(os.path.relpath(image_dir.resolve(), transforms_dir.resolve())).as_posix()
    return "" if prefix == "." else prefix


def write_transforms(model: ColmapModel, path: Path, prefix: str) -> Path:
    """Write transforms_doc(model, prefix) as JSON at `path`."""
    path.write_text(json.dumps(transforms_doc(model, prefix), indent=2) + "\n", encoding="utf-8")
    return path
