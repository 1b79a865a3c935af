"""Whole COLMAP sparse models: locate one on disk, read and validate it, write it back.

`read_model` accepts the binary or the text format (colmap_binary, colmap_text); `write_model`
writes either (tests build models from known cameras; `nerf sfm` reads what pycolmap wrote).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfcli.data.formats import colmap_binary, colmap_text
from nerfcli.data.formats.colmap_model import MODEL_FILES, ColmapModel
from nerfcli.errors import DataError

# ----------------------------------------------------------------------------- locating a model


@dataclass
class ModelLocation:
    model_dir: Path  # holds cameras/images/points3D
    scene_root: Path  # the capture folder: images/ and poses_bounds.npy live here
    format: str  # "bin" or "txt"
    other_models: list[Path]  # sibling reconstructions (sparse/1, ...) that were not used


def _model_format(folder: Path) -> str | None:
    for fmt in ("bin", "txt"):
        if all((folder / f"{name}.{fmt}").is_file() for name in MODEL_FILES):
            return fmt
    return None


def locate_model(path: str | Path) -> ModelLocation:
    """Accept the model folder itself, a `sparse/` folder, or a scene folder with `sparse/0/`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such folder; point at COLMAP's sparse/0 or the scene folder")
    if not path.is_dir():
        raise DataError(
            f"{path}: expected a folder holding cameras, images and points3D (.bin or .txt), "
            "not a file"
        )
    candidates = [path, path / "sparse" / "0", path / "sparse", path / "0"]
    for folder in candidates:
        fmt = _model_format(folder) if folder.is_dir() else None
        if fmt is None:
            continue
        resolved = folder.resolve()
        in_sparse = resolved.parent.name == "sparse"  # sparse/0, sparse/1, ...
        # The scene folder holds sparse/ (or, for a loose model folder, holds that folder).
        root = resolved.parent.parent if in_sparse else resolved.parent
        others = []
        if in_sparse:
            others = sorted(
                p
                for p in resolved.parent.iterdir()
                if p.is_dir() and p != resolved and _model_format(p) is not None
            )
        return ModelLocation(model_dir=folder, scene_root=root, format=fmt, other_models=others)
    present = sorted(p.name for p in path.iterdir())[:8] if path.is_dir() else []
    raise DataError(
        f"{path}: no COLMAP model here (need cameras, images and points3D, all .bin or all "
        f".txt, in this folder or in sparse/0/); found {present or 'nothing'}; run COLMAP's "
        "mapper first or convert with `colmap model_converter`"
    )


# ----------------------------------------------------------------------------- whole model


def read_model(path: str | Path, fmt: str | None = None) -> ColmapModel:
    """Read and validate cameras, images and points3D from a model folder (see locate_model)."""
    if fmt is None:
        location = locate_model(path)
        folder, fmt = location.model_dir, location.format
    else:
        folder = Path(path)
    if fmt == "bin":
        cameras = colmap_binary.read_cameras_binary(folder / "cameras.bin")
        images = colmap_binary.read_images_binary(folder / "images.bin")
        points = colmap_binary.read_points3d_binary(folder / "points3D.bin")
    elif fmt == "txt":
        cameras = colmap_text.read_cameras_text(folder / "cameras.txt")
        images = colmap_text.read_images_text(folder / "images.txt")
        points = colmap_text.read_points3d_text(folder / "points3D.txt")
    else:
        raise ValueError(f"format must be 'bin' or 'txt', got {fmt!r}")
    model = ColmapModel(folder, fmt, cameras, images, points)
    validate_model(model)
    return model


def validate_model(model: ColmapModel) -> None:
    """Structural checks: unique ids and names, finite numbers, consistent references."""
    folder, ext = model.path, model.format
    cameras_file, images_file = folder / f"cameras.{ext}", folder / f"images.{ext}"
    points_file = folder / f"points3D.{ext}"
    camera_ids = set()
    for camera in model.cameras:
        if camera.camera_id in camera_ids:
            raise DataError(f"{cameras_file}: camera id {camera.camera_id} appears twice")
        camera_ids.add(camera.camera_id)
        if not np.isfinite(camera.params).all():
            raise DataError(f"{cameras_file}: camera {camera.camera_id} has non-finite parameters")
    image_ids, names = set(), set()
    for image in model.images:
        where = f"{images_file}: image {image.image_id} ({image.name!r})"
        if image.image_id in image_ids:
            raise DataError(f"{images_file}: image id {image.image_id} appears twice")
        image_ids.add(image.image_id)
        if image.name in names:
            raise DataError(f"{images_file}: image name {image.name!r} appears twice")
        names.add(image.name)
        if not image.name:
            raise DataError(f"{images_file}: image {image.image_id} has an empty name")
        if not (np.isfinite(image.qvec).all() and np.isfinite(image.tvec).all()):
            raise DataError(f"{where} has a non-finite pose")
        with np.errstate(over="ignore", invalid="ignore"):
            norm = float(np.linalg.norm(image.qvec))
        if not abs(norm - 1.0) < 1e-3:
            raise DataError(
                f"{where} has a rotation quaternion of length {norm:.6g}, not 1; the file is "
                "corrupt; re-export the model from COLMAP"
            )
        if image.camera_id not in camera_ids:
            raise DataError(
                f"{where} uses camera {image.camera_id}, which {cameras_file.name} does not "
                "define; the model is inconsistent; re-export it from COLMAP"
            )
    points = model.points
    if not np.isfinite(points.xyz).all():
        bad = int(np.where(~np.isfinite(points.xyz).all(1))[0][0])
        raise DataError(f"{points_file}: point {int(points.ids[bad])} has non-finite coordinates")
    unknown = np.setdiff1d(points.track_image_ids, np.array(sorted(image_ids), dtype=np.int64))
    if len(unknown):
        raise DataError(
            f"{points_file}: a point's track names image id {int(unknown[0])}, which "
            f"{images_file.name} does not hold; the model is inconsistent; re-export it from COLMAP"
        )


def write_model(model: ColmapModel, folder: str | Path, fmt: str = "bin") -> Path:
    """Write cameras/images/points3D in COLMAP's binary ("bin") or text ("txt") format."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "bin":
        colmap_binary.write_cameras_binary(model.cameras, folder / "cameras.bin")
        colmap_binary.write_images_binary(model.images, folder / "images.bin")
        colmap_binary.write_points3d_binary(model.points, folder / "points3D.bin")
    elif fmt == "txt":
        colmap_text.write_cameras_text(model.cameras, folder / "cameras.txt")
        colmap_text.write_images_text(model.images, folder / "images.txt")
        colmap_text.write_points3d_text(model.points, folder / "points3D.txt")
    else:
        raise ValueError(f"format must be 'bin' or 'txt', got {fmt!r}")
    return folder
