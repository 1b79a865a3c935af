"""COLMAP sparse-model types: the camera model table and the cameras / images / points3D records.

Plain data shared by the readers and writers (colmap_binary, colmap_text, colmap_io) and by the
conversion to LLFF (colmap). Only numpy here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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

MODEL_FILES = ("cameras", "images", "points3D")


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
