"""Camera path files: nerfstudio's camera_path.json layout, with the frame it is in recorded.

The page of `nerf view` writes them, `render-video --path` reads them (and also a .npy of
camera-to-world matrices [F, 3, 4] and a transforms.json, its frames in order), and
`inspect-poses --path-out NAME.json` writes a scene's default render path as one.

The file (all matrices 4 x 4, flattened row-major, camera-to-world, OpenGL axes [right, up,
back], as nerfstudio's; fov is the vertical field of view in degrees):

    {"camera_type": "perspective", "render_height": H, "render_width": W, "fps": 30,
     "seconds": 4.0, "is_cycle": false, "smoothness_value": 0.5, "default_fov": 50,
     "keyframes": [{"matrix": [16], "fov": 50, "aspect": 1.5, "time": 0.0}, ...],
     "camera_path": [{"camera_to_world": [16], "fov": 50, "aspect": 1.5}, ...],
     "nerfcli_frame": {"space": "training", "capture": "fern", "format": ...,
                       "kind": "forward", "world_from_file": [[4] x 4], "checkpoint": "..."}}

`nerfcli_frame` names the training frame of the capture the path was made in: the same capture
loaded the same way (scene kind, recentring, scale: `world_from_file`) gives the same frame.
A path whose frame differs from the checkpoint's is refused with the reason; a path without the
record (nerfstudio's own) is read as in the checkpoint's training frame, with a warning.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerfcli.data.cameras import Camera, quaternion_from_rotation, rotation_from_quaternion, slerp
from nerfcli.data.formats import format_module
from nerfcli.data.scene import Scene
from nerfcli.errors import DataError
from nerfcli.evaluation.video import load_path_file
from nerfcli.fsutil import atomic_write

FRAME_KEY = "nerfcli_frame"


@dataclass
class Keyframe:
    c2w: np.ndarray  # [3, 4] training frame, OpenGL axes
    fov: float  # vertical, degrees
    time: float  # seconds from the start of the path
    aspect: float = 1.0


@dataclass
class CameraPath:
    """Poses [F, 3, 4] in the training frame, with the vertical fov [F] in degrees where the
    file gives one (None: the capture's own intrinsics) and the render size where it gives one."""

    poses: np.ndarray  # [F, 3, 4] float32
    fov: np.ndarray | None = None  # [F] degrees
    height: int | None = None
    width: int | None = None
    fps: int | None = None
    keyframes: list[Keyframe] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def camera(self, scene: Scene, index: int) -> Camera:
        """The camera of frame `index`: the scene's path camera, at the file's size and fov."""
        camera = scene.path_camera(self.poses[index])
        if self.fov is None and self.height is None:
            return camera
        height = self.height or camera.height
        width = self.width or camera.width
        if self.fov is not None:
            focal = 0.5 * height / math.tan(0.5 * math.radians(float(self.fov[index])))
        else:
            focal = camera.focal * height / camera.height
        return camera_from_fov(camera, height, width, focal)


def camera_from_fov(base: Camera, height: int, width: int, focal: float) -> Camera:
    """`base` (its pose, bounds, NDC) resized to height x width with focal length `focal`
    (pixels) and the principal point at the centre; an NDC camera keeps base's NDC frustum
    (the training cameras'), so the scene maps into NDC as it did in training."""
    K = np.array(
        [[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]], np.float32
    )
    return Camera(
        height=int(height),
        width=int(width),
        K=K,
        c2w=np.asarray(base.c2w, np.float32),
        ndc=base.ndc,
        near=base.near,
        far=base.far,
        pixel_center=base.pixel_center,
        distortion=None,
        ndc_intrinsics=base.ndc_frustum if base.ndc else None,
    )


def scene_fov(scene: Scene) -> float:
    """The vertical field of view (degrees) of the scene's path camera."""
    camera = scene.path_camera(scene.render_poses[0])
    return math.degrees(2.0 * math.atan(0.5 * camera.height / float(camera.K[1, 1])))


def frame_record(scene: Scene, checkpoint: str | Path | None = None) -> dict:
    """The training frame of `scene` as a path file records it."""
    record = {
        "space": "training",
        "capture": Path(str(scene.root)).name,
        "format": scene.format,
        "kind": scene.kind,
        "frame": scene.frame,
        "world_from_file": np.asarray(scene.world_from_file, np.float64).round(8).tolist(),
    }
    if checkpoint is not None:
        record["checkpoint"] = str(checkpoint)
    return record


def check_frame(record: object, scene: Scene, path: Path) -> None:
    """Refuse a path file made in another frame than `scene`'s training frame."""
    if not isinstance(record, dict):
        raise DataError(f"{path}: {FRAME_KEY} must be an object naming the path's frame")
    made = f"made for capture {record.get('capture')!r} ({record.get('kind')})"
    here = f"this checkpoint is capture {Path(str(scene.root)).name!r} ({scene.kind})"
    if record.get("space") != "training":
        raise DataError(
            f"{path}: {FRAME_KEY}.space must be 'training', got {record.get('space')!r}"
        )
    if record.get("kind") != scene.kind:
        raise DataError(
            f"{path}: camera path is in another frame: {made}, {here}; make the path on this "
            "checkpoint (`nerf view`) or train with the same scene type"
        )
    try:
        theirs = np.asarray(record.get("world_from_file"), np.float64).reshape(4, 4)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {FRAME_KEY}.world_from_file must be a 4 x 4 matrix") from None
    ours = np.asarray(scene.world_from_file, np.float64)
    if not np.allclose(theirs, ours, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(ours).max())):
        raise DataError(
            f"{path}: camera path is in another frame: {made}, {here}, and the two training "
            "frames differ (world_from_file: other recentring or scale); make the path on this "
            "checkpoint (`nerf view`, `inspect-poses --path-out`)"
        )


def write_camera_path(
    path: str | Path,
    poses: np.ndarray,
    fov: np.ndarray | float,
    height: int,
    width: int,
    fps: int,
    frame: dict,
    keyframes: list[Keyframe] | None = None,
    is_cycle: bool = False,
) -> Path:
    """Write a camera_path.json atomically. poses [F, 3, 4] in the training frame."""
    poses = np.asarray(poses, np.float64)
    fovs = np.broadcast_to(np.asarray(fov, np.float64), (len(poses),))
    aspect = width / height
    doc = {
        "camera_type": "perspective",
        "render_height": int(height),
        "render_width": int(width),
        "fps": int(fps),
        "seconds": len(poses) / fps,
        "is_cycle": bool(is_cycle),
        "smoothness_value": 0.5,
        "default_fov": float(fovs[0]) if len(fovs) else 50.0,
        "keyframes": [
            {
                "matrix": _flat(k.c2w),
                "fov": float(k.fov),
                "aspect": float(k.aspect),
                "time": float(k.time),
            }
            for k in keyframes or []
        ],
        "camera_path": [
            {"camera_to_world": _flat(c2w), "fov": float(f), "aspect": aspect}
            for c2w, f in zip(poses, fovs)
        ],
        FRAME_KEY: frame,
    }
    path = Path(path)
    with atomic_write(path, suffix=".tmp") as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def _flat(c2w: np.ndarray) -> list[float]:
    matrix = np.eye(4)
    matrix[:3, :4] = np.asarray(c2w, np.float64)[:3, :4]
    return [round(float(v), 8) for v in matrix.reshape(-1)]


def read_path_file(path: str | Path, scene: Scene) -> CameraPath:
    """A camera path in `scene`'s training frame from a camera_path.json, a transforms.json
    (its frames in order) or a .npy [F, 3, 4]; every problem is a one-line DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: camera path file not found; make one in `nerf view` or with "
            "`nerf inspect-poses SCENE --path-out path.json`"
        )
    if path.suffix.lower() != ".json":
        return CameraPath(poses=load_path_file(path))
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc})") from None
    if isinstance(doc, dict) and "camera_path" in doc:
        return _read_nerfstudio(doc, scene, path)
    if isinstance(doc, dict) and "frames" in doc:
        return _read_transforms(doc, scene, path)
    raise DataError(
        f"{path}: neither a camera_path.json (no 'camera_path' list) nor a transforms.json "
        "(no 'frames' list)"
    )


def _matrix(value: object, path: Path, where: str) -> np.ndarray:
    """A camera-to-world [3, 4] from 16 numbers (row-major) or a 4 x 4 / 3 x 4 nested list."""
    try:
        matrix = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {where} must be a list of numbers") from None
    if matrix.shape == (16,):
        matrix = matrix.reshape(4, 4)
    if matrix.shape not in ((4, 4), (3, 4)) or not np.isfinite(matrix).all():
        raise DataError(f"{path}: {where} must be 16 finite numbers (a 4 x 4 matrix)")
    return matrix[:3, :4]


def _number(value: object, path: Path, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{path}: {where} must be a number, got {str(value)[:40]}")
    if not low < float(value) < high:
        raise DataError(f"{path}: {where} must be between {low} and {high}, got {value}")
    return float(value)


def _read_nerfstudio(doc: dict, scene: Scene, path: Path) -> CameraPath:
    warnings = []
    if FRAME_KEY in doc:
        check_frame(doc[FRAME_KEY], scene, path)
    else:
        warnings.append(
            f"{path}: no {FRAME_KEY} record (not written by nerfcli); read as in this "
            "checkpoint's training frame"
        )
    entries = doc["camera_path"]
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: camera_path must be a non-empty list of cameras")
    poses, fovs = [], []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or "camera_to_world" not in entry:
            raise DataError(f"{path}: camera_path[{k}] has no camera_to_world")
        poses.append(_matrix(entry["camera_to_world"], path, f"camera_path[{k}].camera_to_world"))
        fovs.append(_number(entry.get("fov", 50.0), path, f"camera_path[{k}].fov", 0.0, 180.0))
    height = doc.get("render_height")
    width = doc.get("render_width")
    for name, value in (("render_height", height), ("render_width", width)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise DataError(f"{path}: {name} must be a whole number, got {str(value)[:40]}")
        if value is not None and not 1 <= value <= 16384:
            raise DataError(f"{path}: {name} must be between 1 and 16384, got {value}")
    if height is not None and width is None:
        aspect = float(entries[0].get("aspect", scene.width / scene.height))
        width = max(1, round(height * aspect))
    fps = doc.get("fps")
    fps = (
        int(fps)
        if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps >= 1
        else None
    )
    return CameraPath(
        poses=np.stack(poses).astype(np.float32),
        fov=np.asarray(fovs, np.float64),
        height=height,
        width=width,
        fps=fps,
        warnings=warnings,
    )


def _read_transforms(doc: dict, scene: Scene, path: Path) -> CameraPath:
    """A transforms.json's frames in order, moved into the training frame by the checkpoint's
    world_from_file (which maps that file's world to the training frame)."""
    if not format_module(scene.format).TRANSFORMS_WORLD:
        raise DataError(
            f"{path}: a transforms.json path is in a transforms.json capture's world, but this "
            f"checkpoint was trained on an {scene.format} capture (another frame); use a "
            "camera_path.json made on it (`nerf view`) or a .npy in its training frame"
        )
    frames = doc["frames"]
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{path}: frames must be a non-empty list")
    poses = []
    for k, entry in enumerate(frames):
        if not isinstance(entry, dict) or "transform_matrix" not in entry:
            raise DataError(f"{path}: frames[{k}] has no transform_matrix")
        poses.append(_matrix(entry["transform_matrix"], path, f"frames[{k}].transform_matrix"))
    return CameraPath(poses=to_training_frame(np.stack(poses), scene.world_from_file))


def to_training_frame(c2w_file: np.ndarray, world_from_file: np.ndarray) -> np.ndarray:
    """Camera-to-world [F, 3, 4] in a file's world -> the training frame: positions through
    world_from_file [4, 4], rotations through its rotation part (the scale taken out)."""
    transform = np.asarray(world_from_file, np.float64)
    linear = transform[:3, :3]
    scale = np.cbrt(abs(np.linalg.det(linear)))
    rotation = linear / max(scale, 1e-12)
    out = np.empty((len(c2w_file), 3, 4), np.float64)
    out[:, :, :3] = rotation @ c2w_file[:, :3, :3]
    out[:, :, 3] = c2w_file[:, :3, 3] @ linear.T + transform[:3, 3]
    return out.astype(np.float32)


# -- keyframes -> a dense path


def interpolate_keyframes(
    keyframes: list[Keyframe], fps: int, is_cycle: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Poses [F, 3, 4] and vertical fov [F] (degrees) at `fps` through keyframes at their
    times: positions on a Catmull-Rom spline, rotations by slerp, fov linearly."""
    if len(keyframes) < 1:
        raise DataError("a camera path needs at least one keyframe")
    keys = sorted(keyframes, key=lambda k: k.time)
    if is_cycle:
        keys = keys + [keys[0]]
    times = np.array([k.time for k in keys], np.float64)
    if is_cycle:
        step = np.diff(times[:-1]).mean() if len(keys) > 2 else 1.0
        times[-1] = times[-2] + step
    if len(keys) == 1:
        return np.asarray(keys[0].c2w, np.float32)[None], np.array([keys[0].fov])
    if np.any(np.diff(times) <= 0):
        raise DataError("keyframe times must differ (two keyframes at the same time)")
    count = max(2, int(round((times[-1] - times[0]) * fps)) + (0 if is_cycle else 1))
    samples = times[0] + np.arange(count) / fps
    samples = np.minimum(samples, times[-1])
    positions = np.stack([np.asarray(k.c2w, np.float64)[:3, 3] for k in keys])
    quats = np.stack(
        [quaternion_from_rotation(np.asarray(k.c2w, np.float64)[:3, :3]) for k in keys]
    )
    fovs = np.array([k.fov for k in keys], np.float64)
    poses, out_fov = [], []
    for t in samples:
        i = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(keys) - 2))
        u = (t - times[i]) / (times[i + 1] - times[i])
        p = _catmull_rom(positions, i, u, is_cycle)
        rotation = rotation_from_quaternion(slerp(quats[i], quats[i + 1], u))
        poses.append(np.concatenate([rotation, p[:, None]], 1))
        out_fov.append((1 - u) * fovs[i] + u * fovs[i + 1])
    return np.stack(poses).astype(np.float32), np.asarray(out_fov)


def _catmull_rom(points: np.ndarray, i: int, u: float, cycle: bool) -> np.ndarray:
    """Uniform Catmull-Rom between points[i] and points[i + 1] (ends repeated)."""
    n = len(points)

    def at(j: int) -> np.ndarray:
        if cycle:
            return points[j % (n - 1)] if j >= n else points[j] if j >= 0 else points[n - 1 + j]
        return points[min(max(j, 0), n - 1)]

    p0, p1, p2, p3 = at(i - 1), at(i), at(i + 1), at(i + 2)
    return 0.5 * (
        2 * p1
        + (p2 - p0) * u
        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u**2
        + (3 * p1 - p0 - 3 * p2 + p3) * u**3
    )


def default_path(scene: Scene) -> np.ndarray:
    """The scene's default render path [F, 3, 4]: what `render-video` renders without a path
    option, `inspect-poses --path-out` writes and the page of `nerf view` shows."""
    return np.asarray(scene.render_poses, np.float32)


def write_default_path(path: str | Path, scene: Scene, fps: int = 30) -> Path:
    """The default render path as a camera path file, at the capture's size and fov."""
    camera = scene.path_camera(scene.render_poses[0])
    return write_camera_path(
        path,
        default_path(scene),
        scene_fov(scene),
        camera.height,
        camera.width,
        fps,
        frame_record(scene),
    )
