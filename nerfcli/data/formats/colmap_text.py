"""COLMAP's text model files (cameras.txt, images.txt, points3D.txt): readers and writers.

Readers turn every malformed line into a DataError naming the file, the line and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfcli.data.formats.colmap_model import MODELS_BY_NAME, Camera, ColmapImage, Points3D
from nerfcli.errors import DataError

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


# ----------------------------------------------------------------------------- writers


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
