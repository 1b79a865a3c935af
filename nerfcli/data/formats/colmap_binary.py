"""COLMAP's binary model files (cameras.bin, images.bin, points3D.bin): readers and writers.

Readers never leak struct/Index/Unicode errors: a truncated or corrupt file is a DataError naming
the file and the fix. COLMAP 4 also writes rigs.bin and frames.bin; they are not needed here.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from nerfcli.data.formats.colmap_model import (
    CAMERA_MODELS,
    MODELS_BY_ID,
    MODELS_BY_NAME,
    Camera,
    ColmapImage,
    Points3D,
)
from nerfcli.errors import DataError

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
