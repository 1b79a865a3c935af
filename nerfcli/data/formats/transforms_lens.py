"""A transforms.json frame's lens: its intrinsics at the stored size (fl_x / camera_angle_x,
cx, cy), its OpenCV distortion (k1 k2 p1 p2 k3 k4, or nerfstudio's distortion_params), and the
camera models refused (fisheye, OpenCV's rational model), each failure a DataError naming the
frame."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nerfcli.data.distortion import COEFF_NAMES, fisheye_error
from nerfcli.data.formats.json_frames import as_float32, number, shown
from nerfcli.data.formats.transforms_meta import Frame
from nerfcli.errors import DataError

LENS_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")
LENS_KEYS += COEFF_NAMES + ("k5", "k6", "distortion_params", "camera_model", "is_fisheye")
PERSPECTIVE = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
FISHEYE = ("OPENCV_FISHEYE", "FISHEYE624", "FISHEYE", "THIN_PRISM_FISHEYE")
FIX = "it must hold frames of file_path and transform_matrix, and fl_x (or camera_angle_x)"


def _focal(values: dict, axis: str, side: int, where: str) -> float | None:
    if f"fl_{axis}" in values:
        return number(values[f"fl_{axis}"], f"{where}: fl_{axis}", positive=True)
    if f"camera_angle_{axis}" in values:
        angle = number(values[f"camera_angle_{axis}"], f"{where}: camera_angle_{axis}")
        if not 0 < angle < math.pi:
            raise DataError(f"{where}: camera_angle_{axis} {angle:g} must be in (0, pi) radians")
        return 0.5 * side / math.tan(0.5 * angle)
    return None


def _camera_model(json_path: Path, where: str, values: dict) -> str:
    if values.get("is_fisheye") is True:
        raise fisheye_error(json_path, "is_fisheye")
    model = values.get("camera_model", "OPENCV")
    if not isinstance(model, str):
        raise DataError(f"{where}: camera_model must be a name, got {shown(model)}")
    if model.upper() in FISHEYE:
        raise fisheye_error(json_path, model.upper())
    if model.upper() not in PERSPECTIVE:
        raise DataError(
            f"{where}: unknown camera_model {shown(model)}; supported: {', '.join(PERSPECTIVE)} "
            "(undistort other lenses with `colmap image_undistorter` first)"
        )
    return model.upper()


def _distortion(where: str, values: dict) -> np.ndarray:
    """[6] k1 k2 p1 p2 k3 k4 (nerfstudio's distortion_params are k1 k2 k3 k4 p1 p2)."""
    for key in ("k5", "k6"):
        if key in values and number(values[key], f"{where}: {key}") != 0:
            raise DataError(
                f"{where}: {key} is OpenCV's rational model (FULL_OPENCV), not supported; "
                "undistort the photos with `colmap image_undistorter`"
            )
    params = values.get("distortion_params")
    if params is not None:
        if not isinstance(params, list) or len(params) != 6:
            raise DataError(f"{where}: distortion_params must be 6 numbers k1 k2 k3 k4 p1 p2")
        k1, k2, k3, k4, p1, p2 = (number(v, f"{where}: distortion_params") for v in params)
        return np.array([k1, k2, p1, p2, k3, k4])
    return np.array([number(values.get(k, 0.0), f"{where}: {k}") for k in COEFF_NAMES])


def frame_lens(
    json_path: Path, f: Frame, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, str]:
    """(K [3, 3] at the stored size, distortion [6], camera model) of one frame."""
    where = f"{json_path}: frame {f.index} ({shown(f.key)})"
    model = _camera_model(json_path, where, f.lens)
    h, w = size
    fx = _focal(f.lens, "x", w, where)
    if fx is None:
        raise DataError(f"{where}: missing key 'fl_x' (or 'camera_angle_x'); {FIX}")
    fy = _focal(f.lens, "y", h, where) or fx
    cx = number(f.lens.get("cx", 0.5 * w), f"{where}: cx")
    cy = number(f.lens.get("cy", 0.5 * h), f"{where}: cy")
    if not (1e-30 < fx < 1e30 and 1e-30 < fy < 1e30 and abs(cx) < 1e30 and abs(cy) < 1e30):
        raise DataError(f"{where}: focal {fx:g}, {fy:g} or centre {cx:g}, {cy:g} is not a camera")
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return K, as_float32(_distortion(where, f.lens), where, "a distortion coefficient"), model


def scaled_intrinsics(lenses: list, stored: tuple[int, int], target: tuple[int, int]):
    """(K [N, 3, 3] float32 scaled to the loaded size, distortion [N, 6] float32 or None)."""
    K = np.stack([lens[0] for lens in lenses], 0)  # [N, 3, 3] at the stored size
    K[:, 0] *= target[1] / stored[1]
    K[:, 1] *= target[0] / stored[0]
    distortion = np.stack([lens[1] for lens in lenses], 0).astype(np.float32)  # [N, 6]
    return K.astype(np.float32), distortion if np.any(distortion) else None
