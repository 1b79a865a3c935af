"""What the page draws besides the render: the capture's cameras (frustums with their photos,
held-out views red), the scene box and the default render path (the keyframe panel:
keyframe_panel.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfcli.data.scene import Scene
from nerfcli.viewer.cameras import browser_from_pose, scene_vertical_fov

TRAIN_COLOUR = (40, 110, 220)
HELD_OUT_COLOUR = (230, 40, 40)
PATH_COLOUR = (240, 180, 0)


def scene_scale(scene: Scene) -> float:
    """A length for drawing: the spread of the camera positions."""
    positions = scene.c2w[:, :3, 3]
    spread = float(np.linalg.norm(positions.max(0) - positions.min(0)))
    return spread if spread > 1e-6 else 1.0


def thumbnail(scene: Scene, view: int, height: int = 64) -> np.ndarray | None:
    """A small copy of view's photo: the loaded image, or the file beside the capture."""
    if scene.images is not None:
        image = scene.images[view]
    else:
        image = _read_photo(scene, view)
        if image is None:
            return None
    step = max(1, image.shape[0] // height)
    small = image[::step, ::step]
    if small.dtype != np.uint8:
        small = (np.clip(small, 0, 1) * 255).astype(np.uint8)
    return np.ascontiguousarray(small[..., :3])


def _read_photo(scene: Scene, view: int) -> np.ndarray | None:
    if view >= len(scene.image_files):
        return None
    name = scene.image_files[view]
    root = Path(str(scene.root))
    folders = [root, root / "images", root / f"images_{scene.factor}"]
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.png"):
            if candidate.is_file():
                try:
                    import imageio.v3 as iio

                    return np.asarray(iio.imread(candidate))
                except Exception:
                    return None
    return None


def add_capture(server, scene: Scene, path_poses: np.ndarray) -> None:
    scale = 0.06 * scene_scale(scene)
    fov = scene_vertical_fov(scene)
    aspect = scene.width / scene.height
    held_out = set(scene.held_out)
    for view in range(scene.num_views):
        wxyz, position = browser_from_pose(scene.c2w[view])
        name = "held-out" if view in held_out else "train"
        server.scene.add_camera_frustum(
            f"/cameras/{name}/{view:03d}",
            fov=fov,
            aspect=aspect,
            scale=scale,
            thickness=0.04 * scale,
            color=HELD_OUT_COLOUR if view in held_out else TRAIN_COLOUR,
            image=thumbnail(scene, view),
            wxyz=wxyz,
            position=position,
        )
    if scene.scene_box is not None:
        server.scene.add_line_segments(
            "/scene_box",
            box_edges(np.asarray(scene.scene_box)),
            (200, 200, 200),
            thickness=0.01 * scale / 0.06,
        )
    positions = np.asarray(path_poses)[:, :3, 3]
    segments = np.stack([positions[:-1], positions[1:]], 1)  # [F - 1, 2, 3]
    server.scene.add_line_segments(
        "/default_path", segments, PATH_COLOUR, thickness=0.005 * scale / 0.06
    )


def box_edges(box: np.ndarray) -> np.ndarray:
    """The 12 edges [12, 2, 3] of an axis-aligned box [2, 3] (lo, hi)."""
    lo, hi = box
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
    return np.stack([[corners[a], corners[b]] for a, b in edges])
