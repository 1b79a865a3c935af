"""Comparing recovered camera poses with known ones, up to a similarity (scale, rotation,
translation), as structure from motion fixes neither the scale nor the frame of its world.

umeyama() is the closed form of Umeyama (1991), "Least-squares estimation of transformation
parameters between two point patterns"; pose_errors() aligns camera centres with it and reports
centre errors as a fraction of the capture's extent and viewing-direction errors in degrees.
Used by the sfm tests and bench/sfm_cup.py. Only numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Similarity:
    """x -> scale * rotation @ x + translation."""

    scale: float
    rotation: np.ndarray  # [3, 3], det +1
    translation: np.ndarray  # [3]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """points [..., 3] -> [..., 3]."""
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> Similarity:
    """The similarity minimising sum |dst_i - (s R src_i + t)|^2 over points src, dst [N, 3].

    Needs N >= 3 points not all on one line. R is a proper rotation (the SVD's reflection is
    undone, as in Umeyama's paper); without `with_scale`, s = 1 (a rigid fit).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise ValueError(f"umeyama needs two [N, 3] arrays, got {src.shape} and {dst.shape}")
    if src.shape[0] < 3:
        raise ValueError(f"umeyama needs at least 3 point pairs, got {src.shape[0]}")
    mean_src, mean_dst = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mean_src, dst - mean_dst  # [N, 3]
    covariance = dst_c.T @ src_c / src.shape[0]  # [3, 3]
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance_src = np.mean(np.sum(src_c**2, axis=1))
    if with_scale:
        if not variance_src > 0:
            raise ValueError("umeyama: the source points all coincide")
        scale = float(np.sum(singular * sign) / variance_src)
    else:
        scale = 1.0
    translation = mean_dst - scale * rotation @ mean_src
    return Similarity(scale=scale, rotation=rotation, translation=translation)


@dataclass(frozen=True)
class PoseErrors:
    """Errors of estimated cameras after aligning their centres to the reference ones."""

    alignment: Similarity  # estimated world -> reference world
    extent: float  # largest distance between two reference camera centres
    centre_errors: np.ndarray  # [N] in reference units
    direction_errors_deg: np.ndarray  # [N] angle between viewing directions

    @property
    def median_centre_error_pct(self) -> float:
        return float(100.0 * np.median(self.centre_errors) / self.extent)

    @property
    def max_centre_error_pct(self) -> float:
        return float(100.0 * np.max(self.centre_errors) / self.extent)

    @property
    def median_direction_error_deg(self) -> float:
        return float(np.median(self.direction_errors_deg))

    @property
    def max_direction_error_deg(self) -> float:
        return float(np.max(self.direction_errors_deg))


def _unit_rows(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def pose_errors(
    centres: np.ndarray, directions: np.ndarray, ref_centres: np.ndarray, ref_directions: np.ndarray
) -> PoseErrors:
    """Align estimated centres [N, 3] to reference centres [N, 3] (Umeyama), rotate the estimated
    viewing directions [N, 3] the same way, and measure both against the reference."""
    alignment = umeyama(centres, ref_centres)
    aligned = alignment.apply(centres)  # [N, 3]
    centre_errors = np.linalg.norm(aligned - ref_centres, axis=1)  # [N]
    turned = _unit_rows(np.asarray(directions) @ alignment.rotation.T)  # [N, 3]
    cosines = np.clip(np.sum(turned * _unit_rows(np.asarray(ref_directions)), 1), -1.0, 1.0)
    ref = np.asarray(ref_centres, dtype=np.float64)
    extent = float(np.max(np.linalg.norm(ref[:, None, :] - ref[None, :, :], axis=-1)))
    return PoseErrors(
        alignment=alignment,
        extent=extent,
        centre_errors=centre_errors,
        direction_errors_deg=np.degrees(np.arccos(cosines)),
    )
