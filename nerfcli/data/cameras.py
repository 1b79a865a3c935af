"""Camera maths: poses (LLFF's recentre, spiral and circle paths; Blender's
spherical poses), intrinsics, and `Camera`, one view ready to be turned into rays.

Poses are camera-to-world [..., 3, 4] with rotation columns [right, up, back] (OpenGL).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass
class Camera:
    """One view: image size, intrinsics K [3, 3], pose c2w [3, 4], how its rays are bounded
    (NDC or near..far) and how pixels map to rays (pixel_center, OpenCV distortion [6])."""

    height: int
    width: int
    K: np.ndarray  # [3, 3]
    c2w: np.ndarray  # [3, 4]
    ndc: bool
    near: float
    far: float
    pixel_center: float = 0.0
    distortion: np.ndarray | None = None  # k1 k2 p1 p2 k3 k4
    # (height, width, focal) of the NDC frustum when it is not this camera's own: a view with
    # another size or field of view than the training cameras (`nerf view`) keeps theirs
    ndc_intrinsics: tuple[int, int, float] | None = None

    @property
    def focal(self) -> float:
        return float(self.K[0, 0])

    @property
    def ndc_frustum(self) -> tuple[int, int, float]:
        """(height, width, focal) that map this camera's rays into NDC."""
        if self.ndc_intrinsics is not None:
            return self.ndc_intrinsics
        return self.height, self.width, self.focal

    def downscaled(self, factor: int) -> Camera:
        """The same camera at 1/factor resolution (image size floored, K scaled)."""
        if factor <= 1:
            return self
        K = np.array(self.K, dtype=np.float32)
        K[:2] /= factor
        return replace(self, height=self.height // factor, width=self.width // factor, K=K)


def intrinsics(height: int, width: int, focal: float, fy: float | None = None) -> np.ndarray:
    """K [3, 3] float32 with the principal point at the image centre (W/2, H/2)."""
    return np.array(
        [[focal, 0.0, 0.5 * width], [0.0, focal if fy is None else fy, 0.5 * height], [0, 0, 1]],
        dtype=np.float32,
    )


def normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def view_matrix(z: np.ndarray, up: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Camera-to-world [3, 4] looking along -z with the given up hint, as LLFF's viewmatrix."""
    vec2 = normalize(z)
    vec0 = normalize(np.cross(up, vec2))
    vec1 = normalize(np.cross(vec2, vec0))
    return np.stack([vec0, vec1, vec2, pos], 1)


def poses_avg(c2w: np.ndarray) -> np.ndarray:
    """Average camera [3, 4]: mean position, summed back axis and up axis. c2w: [N, 3, >=4]."""
    center = c2w[:, :3, 3].mean(0)
    vec2 = normalize(c2w[:, :3, 2].sum(0))
    up = c2w[:, :3, 1].sum(0)
    return view_matrix(vec2, up, center)


def to_homogeneous(c2w: np.ndarray) -> np.ndarray:
    """[..., 3, 4] -> [..., 4, 4]."""
    bottom = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), c2w.shape[:-2] + (1, 4))
    return np.concatenate([c2w[..., :3, :4], bottom], -2)


def recenter_poses(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move the average pose to the identity. Returns (recentered [N,3,4], transform [4,4])."""
    avg = to_homogeneous(poses_avg(c2w))
    transform = np.linalg.inv(avg)
    out = transform @ to_homogeneous(c2w)
    return out[:, :3, :4], transform


def spiral_path(
    c2w: np.ndarray, bounds: np.ndarray, frames: int = 120, rots: float = 2.0, zrate: float = 0.5
) -> tuple[np.ndarray, float]:
    """LLFF's spiral render path around the average pose. Returns ([F, 3, 4], focus depth)."""
    avg = poses_avg(c2w)
    up = normalize(c2w[:, :3, 1].sum(0))
    close_depth, inf_depth = bounds.min() * 0.9, bounds.max() * 5.0
    dt = 0.75
    focus = 1.0 / ((1.0 - dt) / close_depth + dt / inf_depth)
    rads = np.percentile(np.abs(c2w[:, :3, 3]), 90, 0)
    rads = np.append(rads, 1.0)
    out = []
    for theta in np.linspace(0.0, 2.0 * np.pi * rots, frames + 1)[:-1]:
        c = avg[:3, :4] @ (
            np.array([np.cos(theta), -np.sin(theta), -np.sin(theta * zrate), 1.0]) * rads
        )
        z = normalize(c - avg[:3, :4] @ np.array([0.0, 0.0, -focus, 1.0]))
        out.append(view_matrix(z, up, c))
    return np.stack(out, 0).reshape(frames, 3, 4), float(focus)


def circle_path(c2w: np.ndarray, frames: int = 120, radius: float | None = None) -> np.ndarray:
    """LLFF's circle render path [F, 3, 4] for spherified poses (unit RMS camera distance):
    a horizontal circle at the cameras' mean height, every camera looking at the origin."""
    if radius is None:
        radius = float(np.sqrt(np.mean(np.sum(np.square(c2w[:, :3, 3]), -1))))
    zh = np.mean(c2w[:, :3, 3], 0)[2]
    radcircle = np.sqrt(max(radius**2 - zh**2, 0.0))
    path = []
    for th in np.linspace(0.0, 2.0 * np.pi, frames):
        origin = np.array([radcircle * np.cos(th), radcircle * np.sin(th), zh])
        up_hint = np.array([0.0, 0.0, -1.0])
        z = normalize(origin)
        x = normalize(np.cross(z, up_hint))
        y = normalize(np.cross(z, x))
        path.append(np.stack([x, y, z, origin], 1))
    return np.stack(path, 0)


def pose_spherical(theta: float, phi: float, radius: float) -> np.ndarray:
    """Blender's render-path camera [4, 4] (nerf-pytorch's pose_spherical): on a sphere of
    `radius` at azimuth theta and elevation phi (degrees), looking at the origin, z up."""
    translate = np.eye(4)
    translate[2, 3] = radius
    phi_r, theta_r = np.deg2rad(phi), np.deg2rad(theta)
    rot_phi = np.array(
        [
            [1, 0, 0, 0],
            [0, np.cos(phi_r), -np.sin(phi_r), 0],
            [0, np.sin(phi_r), np.cos(phi_r), 0],
            [0, 0, 0, 1],
        ]
    )
    rot_theta = np.array(
        [
            [np.cos(theta_r), 0, -np.sin(theta_r), 0],
            [0, 1, 0, 0],
            [np.sin(theta_r), 0, np.cos(theta_r), 0],
            [0, 0, 0, 1],
        ]
    )
    swap = np.array([[-1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
    return swap @ rot_theta @ rot_phi @ translate


def spherical_path(frames: int = 40, phi: float = -30.0, radius: float = 4.0) -> np.ndarray:
    """Blender's render path [F, 3, 4]: pose_spherical(theta, -30, 4) for theta evenly in
    [-180, 180) (nerf-pytorch's 40 poses at the default frames)."""
    thetas = np.linspace(-180.0, 180.0, frames + 1)[:-1]
    return np.stack([pose_spherical(t, phi, radius)[:3, :4] for t in thetas], 0)


def quaternion_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation [3, 3] (Shepperd's method)."""
    m = rotation
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def rotation_from_quaternion(q: np.ndarray) -> np.ndarray:
    """Rotation [3, 3] of a quaternion (w, x, y, z), normalised first."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """The unit quaternion a fraction t of the way from q0 to q1, the shorter way round."""
    dot = float(np.dot(q0, q1))
    if dot < 0:  # the shorter way round
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    angle = np.arccos(dot)
    return (np.sin((1 - t) * angle) * q0 + np.sin(t * angle) * q1) / np.sin(angle)


def interpolate_path(c2w: np.ndarray, frames: int) -> np.ndarray:
    """`frames` poses [F, 3, 4] through the cameras c2w [N, 3, 4] in order (nerfstudio's
    `interpolate`): positions linearly, rotations by slerp, evenly in the camera index."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if len(c2w) == 1 or frames == 1:
        return np.repeat(c2w[:1, :3, :4], frames, 0)
    quats = [quaternion_from_rotation(pose[:3, :3]) for pose in c2w]
    out = []
    for u in np.linspace(0.0, len(c2w) - 1, frames):
        i = min(int(np.floor(u)), len(c2w) - 2)
        t = u - i
        rotation = rotation_from_quaternion(slerp(quats[i], quats[i + 1], t))
        position = (1 - t) * c2w[i, :3, 3] + t * c2w[i + 1, :3, 3]
        out.append(np.concatenate([rotation, position[:, None]], 1))
    return np.stack(out, 0)


# Views spread wider than this around their mean direction make a surround capture.
SURROUND_SPREAD_DEG = 45.0


def view_spread_deg(c2w: np.ndarray) -> float:
    """The largest angle (degrees) between a camera's viewing direction (-z of c2w [N, 3, 4])
    and the cameras' mean one; 180 when the directions cancel out."""
    directions = -np.asarray(c2w, dtype=np.float64)[:, :3, 2]  # [N, 3]
    mean = directions.sum(0)
    norm = np.linalg.norm(mean)
    if not norm > 1e-9:
        return 180.0
    cosines = np.clip(directions @ (mean / norm), -1.0, 1.0)  # [N]
    return float(np.degrees(np.arccos(cosines.min())))


def capture_kind(c2w: np.ndarray) -> str:
    """The kind of capture: forward-facing (every view within SURROUND_SPREAD_DEG of the mean
    direction) or surround (a capture that walks around its subject)."""
    return "surround" if view_spread_deg(c2w) > SURROUND_SPREAD_DEG else "forward-facing"
