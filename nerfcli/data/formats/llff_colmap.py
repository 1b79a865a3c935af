"""Per-view cameras for an LLFF capture from the COLMAP model beside it (`sparse/0`).

poses_bounds.npy keeps one camera (LLFF's imgs2poses writes the first camera's h, w, f into
every row), but COLMAP may have estimated one per photo: cup's 77 cameras have focal lengths
529-632 px where poses_bounds.npy says 589 for all. When the folder holds its model, each view
takes its own intrinsics from it:

- matching: by image name. The LLFF image list is in name order, as poses_bounds.npy's rows
  (imgs2poses sorts the registered images by name), so view i is file i; its COLMAP image is
  the one of that name (of that stem when images_N/ holds converted copies, e.g. .png). Every
  matched image's COLMAP pose must equal row i's pose (to POSE_TOLERANCE of the capture's
  extent), which proves the model is the one the poses came from.
- intrinsics: fx, fy, cx, cy from the camera model, scaled to the loaded size per axis (the
  ratio of loaded to model width and height), with COLMAP's pixel convention (pixel centres
  at +0.5: Scene.pixel_center 0.5).
- distortion: SIMPLE_RADIAL (k), RADIAL (k1 k2), OPENCV (k1 k2 p1 p2) -> Scene.distortion
  [N, 6] k1 k2 p1 p2 k3 k4; SIMPLE_PINHOLE, PINHOLE: none.
- anything that does not fit (an image without a camera, a pose that differs, a lens model
  we cannot trace: fisheyes, FULL_OPENCV, FOV; a different aspect ratio; a damaged model) is
  a CameraFallbackWarning naming the problem and the fix, and every view keeps
  poses_bounds.npy's single camera, exactly as before: training still works, and
  `--llff-camera` asks for that camera on purpose (reference comparisons).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfcli.data.formats.colmap import colmap_c2w, colmap_to_stored_axes
from nerfcli.data.formats.colmap_model import Camera, ColmapModel
from nerfcli.data.formats.poses_bounds import PosesBounds
from nerfcli.errors import DataError

POSE_TOLERANCE = 1e-5  # x the extent of the camera centres (imgs2poses writes float64)
ASPECT_TOLERANCE = 0.02  # as the loader's image-to-pose aspect check
MODEL_DIR = ("sparse", "0")


class CameraFallbackWarning(UserWarning):
    """sparse/0 could not give per-view cameras; poses_bounds.npy's single camera is used."""


@dataclass
class ViewCameras:
    K: np.ndarray  # [N, 3, 3] float32 at the loaded size
    distortion: np.ndarray | None  # [N, 6] float32 k1 k2 p1 p2 k3 k4, None for pinholes
    summary: str  # the one line `nerf train` prints
    model_dir: Path


def model_dir(root: Path) -> Path | None:
    """root/sparse/0 when it holds cameras, images and points3D (.bin or .txt)."""
    folder = root.joinpath(*MODEL_DIR)
    for ext in ("bin", "txt"):
        if all((folder / f"{n}.{ext}").is_file() for n in ("cameras", "images", "points3D")):
            return folder
    return None


def lens(camera: Camera) -> tuple[float, float, float, float, np.ndarray] | None:
    """(fx, fy, cx, cy, distortion [6]) at the model's size, None for a model we cannot use."""
    p = camera.params
    zero = np.zeros(6)
    if camera.model == "SIMPLE_PINHOLE":
        return p[0], p[0], p[1], p[2], zero
    if camera.model == "PINHOLE":
        return p[0], p[1], p[2], p[3], zero
    if camera.model == "SIMPLE_RADIAL":
        return p[0], p[0], p[1], p[2], np.array([p[3], 0, 0, 0, 0, 0])
    if camera.model == "RADIAL":
        return p[0], p[0], p[1], p[2], np.array([p[3], p[4], 0, 0, 0, 0])
    if camera.model == "OPENCV":
        return p[0], p[1], p[2], p[3], np.array([p[4], p[5], p[6], p[7], 0, 0])
    return None


def _match(model: ColmapModel, names: list[str]) -> tuple[list[int], list[str]]:
    """(model image index per name, the names without one): exact name, else the same stem."""
    by_name = {image.name: k for k, image in enumerate(model.images)}
    by_stem: dict[str, int] = {}
    for k, image in enumerate(model.images):
        by_stem.setdefault(Path(image.name).stem, k)
    found: list[int] = []
    missing: list[str] = []
    for name in names:
        k = by_name.get(name, by_stem.get(Path(name).stem))
        if k is None:
            missing.append(name)
        else:
            found.append(k)
    return found, missing


def _fallback(folder: Path, problem: str) -> None:
    warnings.warn(
        f"{folder}: {problem}; every view uses poses_bounds.npy's single camera "
        "(--llff-camera asks for that and silences this)",
        CameraFallbackWarning,
        stacklevel=4,
    )


def view_cameras(
    root: Path, pb: PosesBounds, names: list[str] | None, size: tuple[int, int]
) -> ViewCameras | None:
    """Per-view cameras from root/sparse/0 for the views named `names` (file order = row
    order; None: the model's names in name order), at the loaded size (h, w). None when
    there is no model, or (warned) when it does not fit; see the module docstring."""
    from nerfcli.data.formats.colmap_io import read_model

    folder = model_dir(root)
    if folder is None:
        return None
    try:
        model = read_model(folder, "bin" if (folder / "cameras.bin").is_file() else "txt")
    except DataError as exc:
        _fallback(folder, f"cannot read the model ({exc})")
        return None
    if names is None:
        names = sorted(image.name for image in model.images)
    if len(names) != pb.num_views:
        _fallback(folder, f"{len(names)} images but {pb.num_views} poses")
        return None
    found, missing = _match(model, names)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        _fallback(folder, f"no camera for {len(missing)} of the {len(names)} images ({shown})")
        return None
    images = [model.images[k] for k in found]
    problem = _check_poses(pb, images, names)
    if problem:
        _fallback(folder, problem)
        return None
    return _intrinsics(folder, model, images, size)


def _check_poses(pb: PosesBounds, images, names: list[str]) -> str | None:
    stored = np.stack([colmap_to_stored_axes(colmap_c2w(image)) for image in images], 0)
    extent = float(np.ptp(pb.poses[:, :, 3], axis=0).max()) + 1e-12
    error = np.abs(stored - pb.poses[:, :, :4]).max(axis=(1, 2))  # [N]
    bad = np.where(~(error <= POSE_TOLERANCE * max(extent, 1.0)))[0]
    if len(bad):
        view = int(bad[0])
        return (
            f"its pose of {names[view]} (view {view}) differs from poses_bounds.npy's row "
            f"{view} by {error[view]:.3g}: not the model these poses came from"
        )
    return None


def _intrinsics(folder: Path, model: ColmapModel, images, size) -> ViewCameras | None:
    cameras = {camera.camera_id: camera for camera in model.cameras}
    height, width = size
    K = np.zeros((len(images), 3, 3))
    distortion = np.zeros((len(images), 6))
    for view, image in enumerate(images):
        camera = cameras.get(image.camera_id)
        values = lens(camera) if camera is not None else None
        if values is None:
            what = camera.model if camera is not None else f"camera {image.camera_id} (absent)"
            _fallback(
                folder,
                f"{image.name} has lens model {what}, which nerfcli cannot trace; undistort "
                "the photos with `colmap image_undistorter`",
            )
            return None
        sx, sy = width / camera.width, height / camera.height
        if abs(sx - sy) > ASPECT_TOLERANCE * sx:
            _fallback(
                folder,
                f"{image.name}'s camera is {camera.width} x {camera.height}, not the photos' "
                f"aspect ({width} x {height} loaded)",
            )
            return None
        fx, fy, cx, cy, distortion[view] = values
        K[view] = [[fx * sx, 0.0, cx * sx], [0.0, fy * sy, cy * sy], [0.0, 0.0, 1.0]]
    focal = [float(cameras[image.camera_id].params[0]) for image in images]
    kinds = sorted({cameras[image.camera_id].model for image in images})
    distinct = len({image.camera_id for image in images})
    summary = (
        f"cameras: per view from {folder} ({distinct} camera(s), {'/'.join(kinds)}, focal "
        f"{min(focal):.0f}-{max(focal):.0f} px at {cameras[images[0].camera_id].width} px wide), "
        "matched by image name; --llff-camera for poses_bounds.npy's single camera"
    )
    return ViewCameras(
        K=K.astype(np.float32),
        distortion=distortion.astype(np.float32) if np.any(distortion) else None,
        summary=summary,
        model_dir=folder,
    )


__all__ = ["CameraFallbackWarning", "ViewCameras", "lens", "model_dir", "view_cameras"]
