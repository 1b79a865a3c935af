"""COLMAP sparse models (cameras, images, points3D; binary or text) -> LLFF `poses_bounds.npy`.

The conversion reproduces LLFF's imgs2poses (`load_colmap_data` + `save_poses`):

- hwf = [height, width, params[0]] of the first camera in cameras.bin (file order);
- per registered image, sorted by name: c2w = inverse([R(qvec) | tvec]); its columns
  [right, down, forward] are stored as [down, right, back] = [c2w_y, c2w_x, -c2w_z];
- near/far = the 0.1 and 99.9 percentiles (linear interpolation) of the depths along the viewing
  axis of the 3D points whose track contains that image.

Two deliberate differences, both invisible on well-formed models: a track's image ids are mapped
to rows by id (LLFF assumes ids are 1..N in file order and writes `cams[id - 1]`), and points
behind a camera (depth <= 0) are left out of its bounds (LLFF keeps them, giving near < 0).

Readers never leak struct/Index/Unicode errors: a truncated or corrupt file is a DataError naming
the file and the fix. Writers exist for both formats (tests build models from known cameras).
Only numpy here; the CLI lives in nerfcli/cli/colmap2poses.py.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerfcli.errors import DataError

# ----------------------------------------------------------------------------- camera models


@dataclass(frozen=True)
class CameraModelSpec:
    model_id: int
    name: str
    num_params: int


# Every model COLMAP writes, so any model file parses; only SUPPORTED_MODELS convert.
CAMERA_MODELS = (
    CameraModelSpec(0, "SIMPLE_PINHOLE", 3),
    CameraModelSpec(1, "PINHOLE", 4),
    CameraModelSpec(2, "SIMPLE_RADIAL", 4),
    CameraModelSpec(3, "RADIAL", 5),
    CameraModelSpec(4, "OPENCV", 8),
    CameraModelSpec(5, "OPENCV_FISHEYE", 8),
    CameraModelSpec(6, "FULL_OPENCV", 12),
    CameraModelSpec(7, "FOV", 5),
    CameraModelSpec(8, "SIMPLE_RADIAL_FISHEYE", 4),
    CameraModelSpec(9, "RADIAL_FISHEYE", 5),
    CameraModelSpec(10, "THIN_PRISM_FISHEYE", 12),
    CameraModelSpec(11, "RAD_TAN_THIN_PRISM_FISHEYE", 16),
)
MODELS_BY_ID = {spec.model_id: spec for spec in CAMERA_MODELS}
MODELS_BY_NAME = {spec.name: spec for spec in CAMERA_MODELS}

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

MODEL_FILES = ("cameras", "images", "points3D")
UNREGISTERED_FOLDER = "images_unregistered"
NEAR_PERCENTILE = 0.1
FAR_PERCENTILE = 99.9


# ----------------------------------------------------------------------------- model types


@dataclass
class Camera:
    camera_id: int
    model: str  # a CAMERA_MODELS name
    width: int
    height: int
    params: np.ndarray  # [P] float64, COLMAP's order for the model (focal first)


@dataclass
class ColmapImage:
    image_id: int
    qvec: np.ndarray  # [4] w, x, y, z: world-to-camera rotation
    tvec: np.ndarray  # [3] world-to-camera translation
    camera_id: int
    name: str  # path relative to the images folder
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # [K, 2] keypoints (pixels)
    point3d_ids: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )  # [K] id of the triangulated point, -1 where none


@dataclass
class Points3D:
    """All points of a model as flat arrays; tracks are concatenated in point order."""

    ids: np.ndarray  # [M] uint64
    xyz: np.ndarray  # [M, 3] float64 world coordinates
    rgb: np.ndarray  # [M, 3] uint8
    error: np.ndarray  # [M] float64 mean reprojection error (pixels)
    track_lengths: np.ndarray  # [M] int64
    track_image_ids: np.ndarray  # [T] uint32, T = track_lengths.sum()
    track_point2d_idxs: np.ndarray  # [T] uint32

    @property
    def num_points(self) -> int:
        return int(self.ids.shape[0])

    @staticmethod
    def empty() -> Points3D:
        return Points3D(
            ids=np.zeros(0, dtype=np.uint64),
            xyz=np.zeros((0, 3)),
            rgb=np.zeros((0, 3), dtype=np.uint8),
            error=np.zeros(0),
            track_lengths=np.zeros(0, dtype=np.int64),
            track_image_ids=np.zeros(0, dtype=np.uint32),
            track_point2d_idxs=np.zeros(0, dtype=np.uint32),
        )


@dataclass
class ColmapModel:
    path: Path  # the folder holding the three files
    format: str  # "bin" or "txt"
    cameras: list[Camera]  # file order: LLFF takes hwf from the first
    images: list[ColmapImage]  # file order
    points: Points3D


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


# ----------------------------------------------------------------------------- binary reading


class _BinaryReader:
    """Bounds-checked little-endian reads; every failure is a DataError naming the file."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
        self.offset = 0

    def fail(self, what: str) -> DataError:
        return DataError(
            f"{self.path}: truncated or corrupt at byte {self.offset} of {len(self.data)} "
            f"(reading {what}); re-export the model from COLMAP "
            "(`colmap model_converter --output_type BIN`)"
        )

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def unpack(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize(fmt)
        if size > self.remaining:
            raise self.fail(what)
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += size
        return values

    def count(self, min_record_bytes: int, what: str) -> int:
        (n,) = self.unpack("<Q", f"the number of {what}")
        if n * min_record_bytes > self.remaining:
            raise DataError(
                f"{self.path}: header says {n} {what} but only {self.remaining} bytes follow; "
                "the file is truncated or corrupt; re-export the model from COLMAP"
            )
        return int(n)

    def array(self, dtype: np.dtype, count: int, what: str) -> np.ndarray:
        dtype = np.dtype(dtype)
        if count * dtype.itemsize > self.remaining:
            raise self.fail(what)
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.offset).copy()
        self.offset += count * dtype.itemsize
        return out

    def cstring(self, what: str) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise self.fail(what)
        raw = self.data[self.offset : end]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(
                f"{self.path}: {what} at byte {self.offset} is not valid UTF-8; the file is "
                "corrupt, or rename the photo to plain characters and re-run COLMAP"
            ) from None
        self.offset = end + 1
        return text

    def finish(self) -> None:
        if self.remaining:
            raise DataError(
                f"{self.path}: {self.remaining} unexpected bytes after the last record at byte "
                f"{self.offset}; the file is corrupt; re-export the model from COLMAP"
            )


def read_cameras_binary(path: Path) -> list[Camera]:
    reader = _BinaryReader(path)
    n = reader.count(24, "cameras")
    cameras = []
    for _ in range(n):
        camera_id, model_id, width, height = reader.unpack("<IiQQ", "a camera header")
        spec = MODELS_BY_ID.get(model_id)
        if spec is None:
            raise DataError(
                f"{path}: camera {camera_id} has unknown model id {model_id} "
                f"(known: 0..{len(CAMERA_MODELS) - 1}); the file is corrupt or from a newer COLMAP"
            )
        params = reader.array("<f8", spec.num_params, f"camera {camera_id} parameters")
        cameras.append(Camera(camera_id, spec.name, int(width), int(height), params))
    reader.finish()
    return cameras


_POINT2D_DTYPE = np.dtype([("x", "<f8"), ("y", "<f8"), ("point3d_id", "<i8")])


def read_images_binary(path: Path) -> list[ColmapImage]:
    reader = _BinaryReader(path)
    n = reader.count(73, "images")
    images = []
    for _ in range(n):
        values = reader.unpack("<I7dI", "an image header")
        image_id, camera_id = values[0], values[8]
        name = reader.cstring(f"the name of image {image_id}")
        (num_points2d,) = reader.unpack("<Q", f"the keypoint count of image {image_id}")
        if num_points2d * _POINT2D_DTYPE.itemsize > reader.remaining:
            raise reader.fail(f"the {num_points2d} keypoints of image {image_id}")
        points2d = reader.array(_POINT2D_DTYPE, int(num_points2d), f"keypoints of {name}")
        images.append(
            ColmapImage(
                image_id=image_id,
                qvec=np.array(values[1:5], dtype=np.float64),
                tvec=np.array(values[5:8], dtype=np.float64),
                camera_id=camera_id,
                name=name,
                xys=np.stack([points2d["x"], points2d["y"]], -1).reshape(-1, 2),
                point3d_ids=points2d["point3d_id"].astype(np.int64),
            )
        )
    reader.finish()
    return images


def read_points3d_binary(path: Path) -> Points3D:
    reader = _BinaryReader(path)
    n = reader.count(51, "points")
    header = struct.Struct("<Q3d3BdQ")  # id, xyz, rgb, error, track length: 51 bytes
    data = reader.data
    ids = np.empty(n, dtype=np.uint64)
    xyz = np.empty((n, 3))
    rgb = np.empty((n, 3), dtype=np.uint8)
    error = np.empty(n)
    lengths = np.empty(n, dtype=np.int64)
    track_chunks = []
    offset = reader.offset
    size = len(data)
    for k in range(n):
        if offset + header.size > size:
            reader.offset = offset
            raise reader.fail(f"point {k} of {n}")
        values = header.unpack_from(data, offset)
        offset += header.size
        track_bytes = values[8] * 8
        if offset + track_bytes > size:
            reader.offset = offset
            raise reader.fail(f"the track of point {values[0]}")
        ids[k] = values[0]
        xyz[k] = values[1:4]
        rgb[k] = values[4:7]
        error[k] = values[7]
        lengths[k] = values[8]
        track_chunks.append(data[offset : offset + track_bytes])
        offset += track_bytes
    reader.offset = offset
    reader.finish()
    tracks = np.frombuffer(b"".join(track_chunks), dtype="<u4").reshape(-1, 2)  # [T, 2]
    return Points3D(
        ids=ids,
        xyz=xyz,
        rgb=rgb,
        error=error,
        track_lengths=lengths,
        track_image_ids=tracks[:, 0].astype(np.uint32),
        track_point2d_idxs=tracks[:, 1].astype(np.uint32),
    )


# ----------------------------------------------------------------------------- text reading


def _text_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: byte {exc.start} is not valid UTF-8; the file is corrupt or not a COLMAP "
            "text model; re-export it with `colmap model_converter --output_type TXT`"
        ) from None
    if "\0" in text:
        raise DataError(f"{path}: contains NUL bytes; this is not a COLMAP text model")
    return text.splitlines()


def _bad_line(path: Path, line_number: int, what: str) -> DataError:
    return DataError(
        f"{path}: line {line_number}: {what}; fix or re-export the model with "
        "`colmap model_converter --output_type TXT`"
    )


def _parse_int(token: str, path: Path, line_number: int, what: str, low: int, high: int) -> int:
    try:
        value = int(token)
    except ValueError:
        raise _bad_line(path, line_number, f"{what} {token!r} is not an integer") from None
    if not low <= value <= high:
        raise _bad_line(path, line_number, f"{what} {value} is out of range [{low}, {high}]")
    return value


def _parse_floats(tokens: list[str], path: Path, line_number: int, what: str) -> np.ndarray:
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        raise _bad_line(path, line_number, f"{what} are not all numbers") from None


_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1


def read_cameras_text(path: Path) -> list[Camera]:
    cameras = []
    for number, line in enumerate(_text_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) < 4:
            raise _bad_line(path, number, "expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]")
        camera_id = _parse_int(tokens[0], path, number, "camera id", 0, _UINT32_MAX)
        spec = MODELS_BY_NAME.get(tokens[1])
        if spec is None:
            raise _bad_line(
                path,
                number,
                f"unknown camera model {tokens[1]!r} (known: {', '.join(MODELS_BY_NAME)})",
            )
        width = _parse_int(tokens[2], path, number, "width", 0, _UINT64_MAX)
        height = _parse_int(tokens[3], path, number, "height", 0, _UINT64_MAX)
        if len(tokens) - 4 != spec.num_params:
            raise _bad_line(
                path,
                number,
                f"{spec.name} takes {spec.num_params} parameters, found {len(tokens) - 4}",
            )
        params = _parse_floats(tokens[4:], path, number, "camera parameters")
        cameras.append(Camera(camera_id, spec.name, width, height, params))
    return cameras


def read_images_text(path: Path) -> list[ColmapImage]:
    """Two lines per image: the header, then its keypoints (X Y POINT3D_ID triples, maybe none)."""
    lines = _text_lines(path)
    images = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        number = index + 1
        index += 1
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) < 10:
            raise _bad_line(path, number, "expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        image_id = _parse_int(tokens[0], path, number, "image id", 0, _UINT32_MAX)
        pose = _parse_floats(tokens[1:8], path, number, "the pose values")
        camera_id = _parse_int(tokens[8], path, number, "camera id", 0, _UINT32_MAX)
        # COLMAP splits on single spaces; the name is everything after the camera id.
        name = line.split(maxsplit=9)[9].strip()
        points_line = lines[index] if index < len(lines) else ""
        index += 1
        point_tokens = points_line.split()
        if len(point_tokens) % 3:
            raise _bad_line(
                path,
                number + 1,
                f"keypoints must be X Y POINT3D_ID triples, found {len(point_tokens)} values",
            )
        triples = np.array(point_tokens, dtype=str).reshape(-1, 3)  # [K, 3]
        try:
            xys = triples[:, :2].astype(np.float64)  # [K, 2]
            point3d_ids = triples[:, 2].astype(np.int64)  # [K]
        except (ValueError, OverflowError):
            raise _bad_line(
                path, number + 1, "keypoints are not all X Y POINT3D_ID numbers"
            ) from None
        if (point3d_ids < -1).any():
            raise _bad_line(path, number + 1, "a keypoint has a point3D id below -1")
        images.append(
            ColmapImage(
                image_id=image_id,
                qvec=pose[:4],
                tvec=pose[4:7],
                camera_id=camera_id,
                name=name,
                xys=xys.reshape(-1, 2),
                point3d_ids=point3d_ids,
            )
        )
    return images


def read_points3d_text(path: Path) -> Points3D:
    ids, xyz, rgb, error, lengths, track_ids, track_idxs = [], [], [], [], [], [], []
    for number, line in enumerate(_text_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) < 8 or (len(tokens) - 8) % 2:
            raise _bad_line(
                path,
                number,
                "expected POINT3D_ID X Y Z R G B ERROR then IMAGE_ID POINT2D_IDX pairs",
            )
        ids.append(_parse_int(tokens[0], path, number, "point id", 0, _UINT64_MAX))
        xyz.append(_parse_floats(tokens[1:4], path, number, "point coordinates"))
        rgb.append([_parse_int(t, path, number, "colour", 0, 255) for t in tokens[4:7]])
        error.append(_parse_floats(tokens[7:8], path, number, "the error")[0])
        try:
            track = np.array(tokens[8:], dtype=str).astype(np.int64).reshape(-1, 2)  # [L, 2]
        except (ValueError, OverflowError):
            raise _bad_line(path, number, "track entries are not all integers") from None
        if ((track < 0) | (track > _UINT32_MAX)).any():
            raise _bad_line(path, number, "a track entry is out of range [0, 2^32 - 1]")
        lengths.append(len(track))
        track_ids.append(track[:, 0])
        track_idxs.append(track[:, 1])
    if not ids:
        return Points3D.empty()
    return Points3D(
        ids=np.array(ids, dtype=np.uint64),
        xyz=np.array(xyz, dtype=np.float64).reshape(-1, 3),
        rgb=np.array(rgb, dtype=np.uint8).reshape(-1, 3),
        error=np.array(error, dtype=np.float64),
        track_lengths=np.array(lengths, dtype=np.int64),
        track_image_ids=np.concatenate(track_ids).astype(np.uint32),
        track_point2d_idxs=np.concatenate(track_idxs).astype(np.uint32),
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
        cameras = read_cameras_binary(folder / "cameras.bin")
        images = read_images_binary(folder / "images.bin")
        points = read_points3d_binary(folder / "points3D.bin")
    elif fmt == "txt":
        cameras = read_cameras_text(folder / "cameras.txt")
        images = read_images_text(folder / "images.txt")
        points = read_points3d_text(folder / "points3D.txt")
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

    # Observations (point, row) from the tracks, mapped by image id; a point seen twice in one
    # image counts once, as LLFF's visibility matrix does.
    points = model.points
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
            f"{int(track_ids[~known][0])}, which {images_file.name} does not hold; the model is "
            "inconsistent; re-export it from COLMAP"
        )
    rows = order[positions]  # [T] row of each observation
    pairs = np.unique(point_index * n + rows)  # [V] sorted by point, then row
    point_index, rows = pairs // n, pairs % n

    # Depth along each camera's viewing axis: -(p - centre) . back.
    offsets = points.xyz[point_index] - poses[rows, :, 3]  # [V, 3]
    depths = np.sum(-offsets * poses[rows, :, 2], -1)  # [V]
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
        num_points=points.num_points,
        num_depths=counts,
        warnings=warnings,
    )


# ----------------------------------------------------------------------------- images folder


def unregistered_images(images_dir: Path, names: list[str]) -> list[Path]:
    """Image files in `images_dir` (as the loader lists them) that COLMAP did not register."""
    from nerfcli.data.formats.llff import list_images

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
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npy", dir=parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, np.asarray(poses_bounds, dtype=np.float64))
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ----------------------------------------------------------------------------- writers


def write_cameras_binary(cameras: list[Camera], path: Path) -> None:
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(cameras)))
        for camera in cameras:
            spec = MODELS_BY_NAME[camera.model]
            handle.write(
                struct.pack("<IiQQ", camera.camera_id, spec.model_id, camera.width, camera.height)
            )
            handle.write(np.asarray(camera.params, dtype="<f8").tobytes())


def write_images_binary(images: list[ColmapImage], path: Path) -> None:
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(images)))
        for image in images:
            handle.write(
                struct.pack("<I7dI", image.image_id, *image.qvec, *image.tvec, image.camera_id)
            )
            handle.write(image.name.encode("utf-8") + b"\0")
            points2d = np.zeros(len(image.point3d_ids), dtype=_POINT2D_DTYPE)
            points2d["x"] = image.xys[:, 0]
            points2d["y"] = image.xys[:, 1]
            points2d["point3d_id"] = image.point3d_ids
            handle.write(struct.pack("<Q", len(points2d)))
            handle.write(points2d.tobytes())


def write_points3d_binary(points: Points3D, path: Path) -> None:
    starts = np.concatenate([[0], np.cumsum(points.track_lengths)])
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", points.num_points))
        for k in range(points.num_points):
            handle.write(
                struct.pack(
                    "<Q3d3BdQ",
                    int(points.ids[k]),
                    *points.xyz[k],
                    *(int(c) for c in points.rgb[k]),
                    float(points.error[k]),
                    int(points.track_lengths[k]),
                )
            )
            track = np.stack(
                [
                    points.track_image_ids[starts[k] : starts[k + 1]],
                    points.track_point2d_idxs[starts[k] : starts[k + 1]],
                ],
                -1,
            ).astype("<u4")
            handle.write(track.tobytes())


def _fmt(value: float) -> str:
    return repr(float(value))  # shortest string that round-trips exactly


def write_cameras_text(cameras: list[Camera], path: Path) -> None:
    lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        f"# Number of cameras: {len(cameras)}",
    ]
    for camera in cameras:
        params = " ".join(_fmt(p) for p in camera.params)
        lines.append(f"{camera.camera_id} {camera.model} {camera.width} {camera.height} {params}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_images_text(images: list[ColmapImage], path: Path) -> None:
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(images)}",
    ]
    for image in images:
        pose = " ".join(_fmt(v) for v in [*image.qvec, *image.tvec])
        lines.append(f"{image.image_id} {pose} {image.camera_id} {image.name}")
        lines.append(
            " ".join(
                f"{_fmt(x)} {_fmt(y)} {int(pid)}"
                for (x, y), pid in zip(image.xys, image.point3d_ids, strict=True)
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_points3d_text(points: Points3D, path: Path) -> None:
    lines = [
        "# 3D point list with one line of data per point:",
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
        f"# Number of points: {points.num_points}",
    ]
    starts = np.concatenate([[0], np.cumsum(points.track_lengths)])
    for k in range(points.num_points):
        track = " ".join(
            f"{int(i)} {int(j)}"
            for i, j in zip(
                points.track_image_ids[starts[k] : starts[k + 1]],
                points.track_point2d_idxs[starts[k] : starts[k + 1]],
                strict=True,
            )
        )
        xyz = " ".join(_fmt(v) for v in points.xyz[k])
        rgb = " ".join(str(int(c)) for c in points.rgb[k])
        lines.append(f"{int(points.ids[k])} {xyz} {rgb} {_fmt(points.error[k])} {track}".rstrip())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_model(model: ColmapModel, folder: str | Path, fmt: str = "bin") -> Path:
    """Write cameras/images/points3D in COLMAP's binary ("bin") or text ("txt") format."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "bin":
        write_cameras_binary(model.cameras, folder / "cameras.bin")
        write_images_binary(model.images, folder / "images.bin")
        write_points3d_binary(model.points, folder / "points3D.bin")
    elif fmt == "txt":
        write_cameras_text(model.cameras, folder / "cameras.txt")
        write_images_text(model.images, folder / "images.txt")
        write_points3d_text(model.points, folder / "points3D.txt")
    else:
        raise ValueError(f"format must be 'bin' or 'txt', got {fmt!r}")
    return folder
