"""The page's keyframes, apart from the page: add, move, delete, retime, change the field of
view, and save as a camera path file (nerfstudio's camera_path.json, with the frame)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError
from nerfcli.evaluation.camera_path import (
    Keyframe,
    frame_record,
    interpolate_keyframes,
    write_camera_path,
)


@dataclass
class KeyframeBook:
    scene: Scene
    checkpoint: Path | None = None
    keyframes: list[Keyframe] = field(default_factory=list)
    transition: float = 1.0  # seconds between a new keyframe and the one before it

    def __post_init__(self):
        self.lock = threading.Lock()

    def add(self, c2w: np.ndarray, fov_degrees: float, aspect: float) -> int:
        """A keyframe at the end, `transition` seconds after the last; returns its index."""
        with self.lock:
            time = self.keyframes[-1].time + self.transition if self.keyframes else 0.0
            key = Keyframe(np.asarray(c2w, np.float32)[:3, :4], float(fov_degrees), time, aspect)
            self.keyframes.append(key)
            return len(self.keyframes) - 1

    def move(self, index: int, c2w: np.ndarray, fov_degrees: float | None = None) -> None:
        with self.lock:
            key = self._get(index)
            fov = key.fov if fov_degrees is None else float(fov_degrees)
            self.keyframes[index] = replace(key, c2w=np.asarray(c2w, np.float32)[:3, :4], fov=fov)

    def delete(self, index: int) -> None:
        with self.lock:
            self._get(index)
            del self.keyframes[index]

    def set_time(self, index: int, seconds: float) -> None:
        """Retime one keyframe; the order follows the times."""
        if not math.isfinite(seconds) or seconds < 0:
            raise NerfError(f"keyframe time must be a number >= 0, got {seconds}")
        with self.lock:
            self.keyframes[index] = replace(self._get(index), time=float(seconds))
            self.keyframes.sort(key=lambda k: k.time)

    def set_fov(self, index: int, fov_degrees: float) -> None:
        if not 1.0 <= fov_degrees <= 170.0:
            raise NerfError(f"field of view must be 1..170 degrees, got {fov_degrees}")
        with self.lock:
            self.keyframes[index] = replace(self._get(index), fov=float(fov_degrees))

    def get(self, index: int) -> Keyframe:
        with self.lock:
            return self._get(index)

    def _get(self, index: int) -> Keyframe:
        if not 0 <= index < len(self.keyframes):
            raise NerfError(f"no keyframe {index} (there are {len(self.keyframes)})")
        return self.keyframes[index]

    def path(self, fps: int, is_cycle: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The dense path (poses [F, 3, 4], fov [F] degrees) through the keyframes."""
        with self.lock:
            keys = list(self.keyframes)
        if len(keys) < 2:
            raise NerfError("a camera path needs at least 2 keyframes; add some first")
        return interpolate_keyframes(keys, fps, is_cycle)

    def save(self, path: str | Path, height: int, fps: int, is_cycle: bool = False) -> int:
        """Write the path as a camera_path.json (width from the first keyframe's aspect);
        returns the number of frames."""
        path = Path(path)
        if path.suffix.lower() != ".json":
            raise NerfError(f"{path}: a camera path file must end in .json")
        if not path.parent.is_dir():
            raise NerfError(f"{path}: folder {path.parent} does not exist; create it first")
        poses, fovs = self.path(fps, is_cycle)
        with self.lock:
            keys = list(self.keyframes)
        width = max(1, int(round(height * keys[0].aspect)))
        frame = frame_record(self.scene, self.checkpoint)
        try:
            write_camera_path(path, poses, fovs, height, width, fps, frame, keys, is_cycle)
        except OSError as exc:
            raise NerfError(f"{path}: cannot write ({exc.strerror or exc})") from None
        return len(poses)
