"""Small COLMAP models built from known cameras and points, with the answers computed from the
geometry (not from nerfcli.data.formats.colmap), for the colmap2poses unit and CLI tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfcli.data.formats.colmap import rotmat_to_qvec
from nerfcli.data.formats.colmap_io import write_model
from nerfcli.data.formats.colmap_model import Camera, ColmapImage, ColmapModel, Points3D

DEFAULT_CAMERA = Camera(1, "SIMPLE_PINHOLE", 32, 24, np.array([30.0, 16.0, 12.0]))


@dataclass
class KnownCapture:
    """A model plus the ground truth it was made from (everything in file order)."""

    model: ColmapModel
    centres: np.ndarray  # [N, 3] camera centres in world coordinates
    axes: np.ndarray  # [N, 3, 3] columns [right, down, forward] (COLMAP's camera axes)
    points: np.ndarray  # [M, 3]
    visible: np.ndarray  # [M, N] bool: point m is in image n's track

    @property
    def names(self) -> list[str]:
        return [image.name for image in self.model.images]

    def expected(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(names sorted as text, poses [N, 3, 5] stored [down, right, back, centre, hwf],
        bounds [N, 2] = 0.1 / 99.9 percentiles of the depths of each view's points)."""
        camera = self.model.cameras[0]
        hwf = np.array([camera.height, camera.width, camera.params[0]], dtype=np.float64)
        order = sorted(range(len(self.names)), key=lambda k: self.names[k])
        poses, bounds = [], []
        for k in order:
            right, down, forward = self.axes[k].T
            poses.append(np.stack([down, right, -forward, self.centres[k], hwf], 1))
            depths = (self.points[self.visible[:, k]] - self.centres[k]) @ forward  # [V]
            depths = depths[depths > 0]
            bounds.append(np.percentile(depths, [0.1, 99.9]))
        return [self.names[k] for k in order], np.array(poses), np.array(bounds)


def look_at_axes(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[3, 3] columns [right, down, forward] of a camera at `position` looking at `target`."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(np.array([0.0, -1.0, 0.0]), forward)  # down x forward = right
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], 1)


def make_image(
    image_id: int, name: str, axes: np.ndarray, centre: np.ndarray, camera_id: int = 1
) -> ColmapImage:
    rotation = axes.T  # [3, 3] world-to-camera
    return ColmapImage(
        image_id=image_id,
        qvec=rotmat_to_qvec(rotation),
        tvec=-rotation @ centre,
        camera_id=camera_id,
        name=name,
    )


def build_capture(
    n: int = 5,
    names: list[str] | None = None,
    image_ids: list[int] | None = None,
    cameras: list[Camera] | None = None,
    image_camera_ids: list[int] | None = None,
    num_points: int = 60,
    seed: int = 0,
) -> KnownCapture:
    """Cameras on an arc looking at the origin; points in a unit box; random tracks."""
    rng = np.random.default_rng(seed)
    names = names if names is not None else [f"view_{k}.png" for k in range(n)]
    image_ids = image_ids if image_ids is not None else list(range(1, n + 1))
    cameras = cameras if cameras is not None else [DEFAULT_CAMERA]
    image_camera_ids = image_camera_ids or [cameras[0].camera_id] * n
    n = len(names)
    angles = np.linspace(-0.8, 0.8, n)
    centres = np.stack(
        [4 * np.sin(angles), rng.uniform(-0.5, 0.5, n), 4 * np.cos(angles)], 1
    )  # [N, 3]
    targets = rng.normal(0.0, 0.1, (n, 3))
    axes = np.stack([look_at_axes(c, t) for c, t in zip(centres, targets, strict=True)], 0)
    points = rng.uniform(-1.0, 1.0, (num_points, 3))  # [M, 3]
    visible = rng.random((num_points, n)) < 0.6  # [M, N]
    visible[:3] = True  # every view sees at least three points

    images = []
    for k in range(n):
        image = make_image(image_ids[k], names[k], axes[k], centres[k], image_camera_ids[k])
        images.append(image)
    point_ids = np.arange(num_points, dtype=np.uint64) * 3 + 100  # ids need not be 1..M
    track_image_ids, track_point2d_idxs = [], []
    keypoints: list[list[tuple[float, float, int]]] = [[(1.0, 2.0, -1)] for _ in range(n)]
    camera = cameras[0]
    for m in range(num_points):
        for k in np.where(visible[m])[0]:
            local = axes[k].T @ (points[m] - centres[k])  # [3] camera coordinates
            x = camera.params[0] * local[0] / local[2] + camera.width / 2
            y = camera.params[0] * local[1] / local[2] + camera.height / 2
            track_image_ids.append(image_ids[k])
            track_point2d_idxs.append(len(keypoints[k]))
            keypoints[k].append((x, y, int(point_ids[m])))
    for image, rows in zip(images, keypoints, strict=True):
        image.xys = np.array([(x, y) for x, y, _ in rows], dtype=np.float64).reshape(-1, 2)
        image.point3d_ids = np.array([pid for _, _, pid in rows], dtype=np.int64)
    model = ColmapModel(
        path=Path("."),
        format="bin",
        cameras=cameras,
        images=images,
        points=Points3D(
            ids=point_ids,
            xyz=points,
            rgb=rng.integers(0, 256, (num_points, 3)).astype(np.uint8),
            error=rng.uniform(0.1, 1.0, num_points),
            track_lengths=visible.sum(1).astype(np.int64),
            track_image_ids=np.array(track_image_ids, dtype=np.uint32),
            track_point2d_idxs=np.array(track_point2d_idxs, dtype=np.uint32),
        ),
    )
    return KnownCapture(model=model, centres=centres, axes=axes, points=points, visible=visible)


def write_scene(
    root: Path,
    capture: KnownCapture,
    fmt: str = "bin",
    extra_images: tuple[str, ...] = (),
    with_images: bool = True,
) -> Path:
    """A scene folder: sparse/0/ with the model and images/ with one PNG per registered view
    (plus `extra_images` that COLMAP 'did not register'). Returns the scene folder."""
    write_model(capture.model, root / "sparse" / "0", fmt)
    if with_images:
        import imageio.v3 as iio

        camera = capture.model.cameras[0]
        folder = root / "images"
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(1)
        for name in [*capture.names, *extra_images]:
            pixels = rng.integers(0, 255, (camera.height, camera.width, 3), dtype=np.uint8)
            iio.imwrite(folder / name, pixels)
    return root
