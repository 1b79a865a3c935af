"""`nerf export cameras`: the views of a checkpoint's scene as a nerfstudio-layout
transforms.json, as camera frustums in a PLY (edges), and, where the capture has a COLMAP model
(sparse/0 of an LLFF capture, whose world is the poses file's), its sparse points as a PLY.

transforms.json follows nerfstudio's layout: per frame `file_path`, `transform_matrix`
(camera-to-world [4, 4], OpenGL axes: x right, y up, z back), `fl_x fl_y cx cy w h` and, with
distortion, `k1 k2 p1 p2` (+ `k3 k4`); `ply_file_path` names the sparse points. The keys
`nerfcli_frame` / `nerfcli_frame_description` record the coordinates.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError
from nerfcli.export.frames import (
    file_from_training,
    frame_scale,
    transform_points,
    transform_poses,
)
from nerfcli.export.ply import PlyData
from nerfcli.fsutil import atomic_write

FRUSTUM_EDGES = np.array(
    [[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 3], [3, 4], [4, 1], [5, 6], [6, 7], [7, 5]]
)  # apex to the 4 image corners, the image rectangle, and an "up" triangle above it
SPLIT_COLOURS = {"train": (40, 120, 255), "val": (255, 160, 0), "test": (255, 60, 60)}


def view_splits(scene: Scene) -> list[str]:
    """The split name of every view ("train", "val", "test"; "unused" otherwise)."""
    names = ["unused"] * scene.num_views
    for split in ("train", "val", "test"):
        for view in scene.splits.get(split, []):
            names[view] = split
    return names


def frustum_corners(scene: Scene, view: int, depth: float) -> np.ndarray:
    """Training-frame points [8, 3] of one view's frustum drawn `depth` deep: apex, the image's
    four corners, and the tip and base of an "up" marker above the top edge."""
    K = np.asarray(scene.K[view], np.float64)
    width, height = scene.width, scene.height
    pixels = np.array(
        [[0, 0], [width, 0], [width, height], [0, height], [width / 2, -0.25 * height]]
        + [[0.3 * width, -0.02 * height], [0.7 * width, -0.02 * height]],
        np.float64,
    )
    x = (pixels[:, 0] - K[0, 2]) / K[0, 0]
    y = -(pixels[:, 1] - K[1, 2]) / K[1, 1]
    camera = np.stack([x, y, -np.ones_like(x)], -1) * depth  # [7, 3] camera frame (OpenGL)
    camera = np.concatenate([np.zeros((1, 3)), camera[:4], camera[4:]])  # apex first
    c2w = np.asarray(scene.c2w[view], np.float64)
    return camera @ c2w[:, :3].T + c2w[:, 3]


def frustums_ply(scene: Scene, transform: np.ndarray, comments: list[str]) -> PlyData:
    """Every view's frustum (8 vertices, 11 edges, coloured by split), in the output frame;
    drawn a tenth of the cameras' spread deep (at least 0.05 training units)."""
    centres = np.asarray(scene.c2w[:, :, 3], np.float64)
    spread = float(np.linalg.norm(centres.max(0) - centres.min(0)))
    depth = max(0.1 * spread, 0.05)
    splits = view_splits(scene)
    vertices, edges, colours = [], [], []
    for view in range(scene.num_views):
        vertices.append(frustum_corners(scene, view, depth))
        edges.append(FRUSTUM_EDGES + 8 * view)
        colours.append(np.tile(SPLIT_COLOURS.get(splits[view], (128, 128, 128)), (8, 1)))
    points = transform_points(transform, np.concatenate(vertices))
    return PlyData(
        vertices=points,
        colours=np.concatenate(colours).astype(np.uint8),
        edges=np.concatenate(edges),
        comments=comments,
    )


def sparse_points(scene: Scene, transform: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """COLMAP's sparse points [M, 3] (output frame) and colours [M, 3] uint8, where the capture
    has a model whose world is the capture's (LLFF: poses_bounds.npy comes from it); None
    where it has none."""
    from nerfcli.data.formats import format_module
    from nerfcli.data.formats.colmap_io import read_model

    model_dir = Path(scene.root) / "sparse" / "0"
    if not format_module(scene.format).COLMAP_IS_CAPTURE_WORLD or not model_dir.is_dir():
        return None
    model = read_model(model_dir)
    if model.points.num_points == 0:
        return None
    training = transform_points(np.linalg.inv(file_from_training(scene)), model.points.xyz)
    return transform_points(transform, training), model.points.rgb.astype(np.uint8)


def _relative(path: str, out_dir: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), out_dir.resolve())
    except ValueError:  # another drive
        return str(path)


def transforms_document(
    scene: Scene,
    transform: np.ndarray,
    image_paths: list[str],
    image_scales: list[float],
    out_dir: Path,
    frame: str,
    description: str,
) -> dict:
    """The nerfstudio-layout transforms.json of every view, in the output frame; the
    intrinsics at the size of each view's photo (image_scales: photo size / trained size)."""
    poses = transform_poses(transform, scene.c2w)  # [N, 4, 4]
    splits = view_splits(scene)
    frames = []
    for view in range(scene.num_views):
        scale = image_scales[view] if view < len(image_scales) else 1.0
        K = scene.K[view].astype(np.float64) * scale
        shift = (0.5 - float(scene.pixel_center)) * scale
        item = {
            "file_path": _relative(image_paths[view], out_dir) if view < len(image_paths) else "",
            "transform_matrix": poses[view].tolist(),
            "fl_x": float(K[0, 0]),
            "fl_y": float(K[1, 1]),
            # nerfstudio's rays pass through pixel centres (i + 0.5); nerfcli's through
            # i + pixel_center: the principal point shifts by the difference
            "cx": float(K[0, 2]) + shift,
            "cy": float(K[1, 2]) + shift,
            "w": int(round(scene.width * scale)),
            "h": int(round(scene.height * scale)),
            "nerfcli_split": splits[view],
        }
        if scene.distortion is not None:
            names = ("k1", "k2", "p1", "p2", "k3", "k4")
            item.update({n: float(v) for n, v in zip(names, scene.distortion[view])})
        frames.append(item)
    return {
        "camera_model": "OPENCV",
        "nerfcli_frame": frame,
        "nerfcli_frame_description": description,
        "nerfcli_units_per_training_unit": frame_scale(transform),
        "nerfcli_pixel_center": float(scene.pixel_center),
        "frames": frames,
    }


def write_json(path: Path, document: dict) -> None:
    try:
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(document, indent=2), encoding="utf-8")
    except OSError as exc:
        raise NerfError(f"{path}: cannot write ({exc.strerror or exc})") from None
