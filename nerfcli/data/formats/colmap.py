"""A COLMAP sparse model (see colmap_io) -> LLFF `poses_bounds.npy`, as LLFF's imgs2poses.

The conversion reproduces LLFF's imgs2poses (`load_colmap_data` + `save_poses`):

- hwf = [height, width, params[0]] of the first camera in cameras.bin (file order);
- per registered image, sorted by name: c2w = inverse([R(qvec) | tvec]); its columns
  [right, down, forward] are stored as [down, right, back] = [c2w_y, c2w_x, -c2w_z];
- near/far = the 0.1 and 99.9 percentiles (linear interpolation) of the depths along the viewing
  axis of the 3D points whose track contains that image.

Two deliberate differences, both invisible on well-formed models: a track's image ids are mapped
to rows by id (LLFF assumes ids are 1..N in file order and writes `cams[id - 1]`), and points
behind a camera (depth <= 0) are left out of its bounds (LLFF keeps them, giving near < 0).

Reading and writing models lives in colmap_io (with colmap_binary, colmap_text and the types in
colmap_model); this module is the conversion. Only numpy here; the CLIs are
nerfcli/cli/colmap2poses.py and nerfcli/cli/sfm.py.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfcli.data.formats.colmap_model import Camera, ColmapImage, ColmapModel
from nerfcli.errors import DataError
from nerfcli.fsutil import atomic_write

# Pinhole-projection models; the parameter slots of their focal lengths and distortion terms.
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
_FOCAL_SLOTS = {
    "SIMPLE_PINHOLE": (0, 0),
    "PINHOLE": (0, 1),
    "SIMPLE_RADIAL": (0, 0),
    "RADIAL": (0, 0),
    "OPENCV": (0, 1),
}
_DISTORTION_SLOTS = {
    "SIMPLE_PINHOLE": (),
    "PINHOLE": (),
    "SIMPLE_RADIAL": (("k", 3),),
    "RADIAL": (("k1", 3), ("k2", 4)),
    "OPENCV": (("k1", 4), ("k2", 5), ("p1", 6), ("p2", 7)),
}
FOCAL_RELATIVE_TOL = 1e-6  # fx and fy closer than this count as equal

UNREGISTERED_FOLDER = "images_unregistered"
NEAR_PERCENTILE = 0.1
FAR_PERCENTILE = 99.9


# ----------------------------------------------------------------------------- conversion


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> [3, 3] rotation, COLMAP's convention."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array(
        [
            [1 - 2 * y * y - 2 * z * z, 2 * x * y - 2 * w * z, 2 * z * x + 2 * w * y],
            [2 * x * y + 2 * w * z, 1 - 2 * x * x - 2 * z * z, 2 * y * z - 2 * w * x],
            [2 * z * x - 2 * w * y, 2 * y * z + 2 * w * x, 1 - 2 * x * x - 2 * y * y],
        ]
    )


def rotmat_to_qvec(rotation: np.ndarray) -> np.ndarray:
    """[3, 3] rotation -> unit quaternion (w, x, y, z) with w >= 0 (Shepperd's method)."""
    r = np.asarray(rotation, dtype=np.float64)
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def colmap_c2w(image: ColmapImage) -> np.ndarray:
    """Camera-to-world [3, 4] in COLMAP's axes: columns [right, down, forward, centre]."""
    rotation = qvec_to_rotmat(image.qvec)  # [3, 3] world-to-camera
    w2c = np.eye(4)
    w2c[:3, :3] = rotation
    w2c[:3, 3] = image.tvec
    return np.linalg.inv(w2c)[:3, :4]


def colmap_to_stored_axes(c2w: np.ndarray) -> np.ndarray:
    """[..., 3, 4] COLMAP [right, down, forward, t] -> LLFF stored [down, right, back, t]."""
    return np.concatenate([c2w[..., 1:2], c2w[..., 0:1], -c2w[..., 2:3], c2w[..., 3:4]], -1)


@dataclass
class ColmapPoses:
    """The rows of poses_bounds.npy plus what a user should know about them."""

    poses_bounds: np.ndarray  # [N, 17] float64: 3x5 [down, right, back, centre, hwf], near, far
    names: list[str]  # image names in row order (sorted as text)
    image_ids: list[int]  # COLMAP image id of each row
    camera: Camera  # the camera that filled hwf (the first in the file)
    num_points: int
    num_depths: np.ndarray  # [N] how many points in front of each view fed its bounds
    warnings: list[str]

    @property
    def num_views(self) -> int:
        return int(self.poses_bounds.shape[0])

    @property
    def poses(self) -> np.ndarray:  # [N, 3, 5]
        return self.poses_bounds[:, :15].reshape(-1, 3, 5)

    @property
    def bounds(self) -> np.ndarray:  # [N, 2]
        return self.poses_bounds[:, 15:17]

    @property
    def height(self) -> int:
        return self.camera.height

    @property
    def width(self) -> int:
        return self.camera.width

    @property
    def focal(self) -> float:
        return float(self.camera.params[0])


def camera_warnings(model: ColmapModel) -> list[str]:
    """Unsupported models are errors; distortion, fx != fy and mixed cameras are warnings."""
    if not model.cameras:
        raise DataError(f"{model.path}: cameras.{model.format} holds no cameras")
    used = {image.camera_id for image in model.images}
    first = model.cameras[0]
    relevant = [first] + [c for c in model.cameras[1:] if c.camera_id in used]
    for camera in relevant:
        if camera.model not in SUPPORTED_MODELS:
            raise DataError(
                f"{model.path / f'cameras.{model.format}'}: camera {camera.camera_id} uses "
                f"{camera.model}, which is not a pinhole model (supported: "
                f"{', '.join(SUPPORTED_MODELS)}); undistort with `colmap image_undistorter` and "
                "convert its sparse/ output"
            )
    warnings = []
    for camera in relevant:
        if camera.width <= 0 or camera.height <= 0 or not camera.params[0] > 0:
            raise DataError(
                f"{model.path / f'cameras.{model.format}'}: camera {camera.camera_id} has "
                f"size {camera.width}x{camera.height} and focal {camera.params[0]:g}; all must "
                "be positive"
            )
    for camera in relevant:
        label = f"camera {camera.camera_id} ({camera.model})"
        fx_slot, fy_slot = _FOCAL_SLOTS[camera.model]
        fx, fy = float(camera.params[fx_slot]), float(camera.params[fy_slot])
        if abs(fx - fy) > FOCAL_RELATIVE_TOL * abs(fx):
            warnings.append(
                f"{label} has fx={fx:.6g} != fy={fy:.6g} ({100 * abs(fx - fy) / fx:.3g}% apart); "
                "LLFF stores one focal and uses fx"
            )
        terms = [
            f"{name}={camera.params[slot]:.4g}"
            for name, slot in _DISTORTION_SLOTS[camera.model]
            if camera.params[slot] != 0
        ]
        if terms:
            warnings.append(
                f"{label} has lens distortion ({', '.join(terms)}) that NeRF ignores; for sharp "
                "results undistort with `colmap image_undistorter` and convert its output"
            )
    others = [c for c in relevant[1:] if c is not first]
    differ = [
        c
        for c in others
        if (c.model, c.width, c.height) != (first.model, first.width, first.height)
        or not np.array_equal(c.params, first.params)
    ]
    if differ:
        focals = [float(c.params[0]) for c in [first] + differ]
        warnings.append(
            f"{len(differ) + 1} cameras with different intrinsics (focal {min(focals):.6g} to "
            f"{max(focals):.6g}); LLFF stores one camera, so every view gets camera "
            f"{first.camera_id}'s (focal {float(first.params[0]):.6g}); for one shared camera run "
            "COLMAP with --ImageReader.single_camera 1"
        )
        sizes = {(c.width, c.height) for c in [first] + differ}
        if len(sizes) > 1:
            warnings.append(
                f"the cameras have different image sizes {sorted(sizes)}; every view must "
                "share one size for NeRF"
            )
    return warnings


def colmap_to_poses_bounds(model: ColmapModel) -> ColmapPoses:
    """LLFF imgs2poses on a loaded model: [N, 17] rows in image-name order (see module doc)."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught as non-finite below
        return _colmap_to_poses_bounds(model)


def _colmap_to_poses_bounds(model: ColmapModel) -> ColmapPoses:
    images_file = model.path / f"images.{model.format}"
    if not model.images:
        raise DataError(
            f"{images_file}: no registered images; COLMAP could not reconstruct this capture "
            "(more overlap between photos, or a different matcher, usually helps)"
        )
    warnings = camera_warnings(model)
    camera = model.cameras[0]
    hwf = np.array([camera.height, camera.width, camera.params[0]], dtype=np.float64)  # [3]

    images = sorted(model.images, key=lambda image: image.name)
    n = len(images)
    c2w = np.stack([colmap_c2w(image) for image in images], 0)  # [N, 3, 4] COLMAP axes
    stored = colmap_to_stored_axes(c2w)  # [N, 3, 4] [down, right, back, centre]
    poses = np.concatenate([stored, np.broadcast_to(hwf[None, :, None], (n, 3, 1))], 2)

    point_index, rows = _observations(model, images)  # [V], [V]
    # Depth along each camera's viewing axis: -(p - centre) . back.
    offsets = model.points.xyz[point_index] - poses[rows, :, 3]  # [V, 3]
    depths = np.sum(-offsets * poses[rows, :, 2], -1)  # [V]
    bounds, counts = _depth_bounds(model, images, rows, depths, warnings)  # [N, 2], [N]
    poses_bounds = np.concatenate([poses.reshape(n, 15), bounds], 1)  # [N, 17]
    bad = np.where(~np.isfinite(poses_bounds).all(1))[0]
    if len(bad):
        raise DataError(
            f"{images_file}: image {images[int(bad[0])].name!r} gives a non-finite pose or bounds "
            "(its translation or points are out of range); the model is corrupt"
        )
    return ColmapPoses(
        poses_bounds=poses_bounds,
        names=[image.name for image in images],
        image_ids=[int(image.image_id) for image in images],
        camera=camera,
        num_points=model.points.num_points,
        num_depths=counts,
        warnings=warnings,
    )


def _observations(model: ColmapModel, images: list) -> tuple[np.ndarray, np.ndarray]:
    """(point, row) of each observation in the tracks, rows in `images` order, sorted by point
    then row [V], [V]; a point seen twice in one image counts once, as LLFF's visibility
    matrix does."""
    points, n = model.points, len(images)
    ids = np.array([image.image_id for image in images], dtype=np.int64)  # [N]
    order = np.argsort(ids)
    sorted_ids = ids[order]
    point_index = np.repeat(np.arange(points.num_points), points.track_lengths)  # [T]
    track_ids = points.track_image_ids.astype(np.int64)  # [T]
    positions = np.minimum(np.searchsorted(sorted_ids, track_ids), n - 1)  # [T]
    known = sorted_ids[positions] == track_ids
    if not known.all():
        raise DataError(
            f"{model.path / f'points3D.{model.format}'}: a point's track names image id "
            f"{int(track_ids[~known][0])}, which images.{model.format} does not hold; the model "
            "is inconsistent; re-export it from COLMAP"
        )
    rows = order[positions]  # [T] row of each observation
    pairs = np.unique(point_index * n + rows)  # [V] sorted by point, then row
    return pairs // n, pairs % n


def _depth_bounds(
    model: ColmapModel, images: list, rows: np.ndarray, depths: np.ndarray, warnings: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(near, far) of each image [N, 2] (the NEAR/FAR_PERCENTILE of the depths of the points in
    front of it) and how many depths each has [N]; observations behind their camera are left
    out with a warning."""
    images_file = model.path / f"images.{model.format}"
    n = len(images)
    in_front = depths > 0
    behind = int((~in_front).sum())
    if behind:
        warnings.append(
            f"{behind} point observations lie behind their camera and were left out of the "
            "bounds (LLFF would keep them and could write a negative near)"
        )
    rows, depths = rows[in_front], depths[in_front]
    by_row = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=n)  # [N]
    groups = np.split(depths[by_row], np.cumsum(counts)[:-1])
    bounds = np.zeros((n, 2))
    for row, row_depths in enumerate(groups):
        if len(row_depths) < 2:
            raise DataError(
                f"{images_file}: image {images[row].name!r} sees {len(row_depths)} 3D point(s) "
                "in front of it, too few for depth bounds; delete it from the model "
                "(`colmap image_deleter`) or reconstruct with more features"
            )
        bounds[row] = np.percentile(row_depths, [NEAR_PERCENTILE, FAR_PERCENTILE])
        if not bounds[row, 0] < bounds[row, 1]:
            raise DataError(
                f"{images_file}: image {images[row].name!r} has near = far = "
                f"{bounds[row, 0]:g} (all its points at one depth); delete it from the model "
                "or reconstruct with more features"
            )
    return bounds, counts


# ----------------------------------------------------------------------------- images folder


def unregistered_images(images_dir: Path, names: list[str]) -> list[Path]:
    """Image files in `images_dir` (as the loader lists them) that COLMAP did not register."""
    from nerfcli.data.images import list_images

    registered = set(names)
    return [p for p in list_images(images_dir) if p.name not in registered]


def missing_images(images_dir: Path, names: list[str]) -> list[str]:
    """Registered image names with no file in `images_dir`."""
    return [name for name in names if not (images_dir / name).is_file()]


def check_move_aside(files: list[Path], destination: Path) -> None:
    """Raise before anything moves if a file of the same name already waits in `destination`."""
    if destination.exists() and not destination.is_dir():
        raise DataError(f"{destination}: exists and is not a folder; rename it (nothing was moved)")
    clashes = [destination / f.name for f in files if (destination / f.name).exists()]
    if clashes:
        raise DataError(
            f"{clashes[0]}: already exists; move or rename it, then run --prune-images again "
            "(nothing was moved)"
        )


def move_aside(files: list[Path], destination: Path) -> list[Path]:
    """Move files into `destination` (created if needed); never overwrites, never deletes."""
    check_move_aside(files, destination)
    try:
        destination.mkdir(exist_ok=True)
    except OSError as exc:
        raise DataError(f"{destination}: cannot create ({exc.strerror or exc})") from None
    moved = []
    for source in files:
        target = destination / source.name
        try:
            os.rename(source, target)
        except OSError as exc:
            raise DataError(
                f"{source}: cannot move to {destination} ({exc.strerror or exc}); "
                f"{len(moved)} of {len(files)} files were moved"
            ) from None
        moved.append(target)
    return moved


# ----------------------------------------------------------------------------- output


def save_poses_bounds(path: str | Path, poses_bounds: np.ndarray) -> None:
    """Write an [N, 17] float64 array atomically (temp file in the same folder + rename)."""
    path = Path(path)
    try:
        with atomic_write(path, suffix=".npy") as tmp:
            np.save(tmp, np.asarray(poses_bounds, dtype=np.float64))
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
