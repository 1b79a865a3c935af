"""Camera path -> rendered frames -> .mp4 (imageio's ffmpeg plugin) or .gif, written atomically."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from nerfcli.data.cameras import Camera, circle_path, interpolate_path, spherical_path, spiral_path
from nerfcli.data.formats import frame_flag
from nerfcli.data.orbit import orbit_path
from nerfcli.data.scene import Scene
from nerfcli.errors import ConfigError, DataError, NerfError
from nerfcli.fsutil import temp_path_beside
from nerfcli.metrics import colormap, to8b
from nerfcli.models.base import RadianceModel
from nerfcli.render.image import render_view
from nerfcli.training.distributed import SINGLE, Ranks

VIDEO_SUFFIXES = (".mp4", ".gif")


def camera_path(scene: Scene, kind: str, frames: int, path_file: Path | None = None) -> np.ndarray:
    """Camera-to-world matrices [F, 3, 4] in the training frame.

    kind: 'spiral' (LLFF spiral around the average pose), 'circle' (spherified captures),
    'orbit' (the best-fit circle of the cameras, looking at the scene's centre),
    'interpolate' (through the training cameras in order), 'spherical' (Blender's),
    'default' (the scene's own render path) or 'file' (path_file, [F, 3, 4] or [F, 4, 4]).
    """
    if kind == "file":
        return load_path_file(path_file)
    if frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {frames}")
    if kind == "default" or kind == scene.render_path:
        if frames == len(scene.render_poses):
            return np.asarray(scene.render_poses, dtype=np.float32)
        kind = scene.render_path
    if kind == "circle":
        if scene.render_path != "circle":
            raise ConfigError(
                f"--circle needs a model trained with {frame_flag('spherified')} (a capture "
                "around an object); "
                f"this model's own path is the {scene.render_path}: {_own_path(scene)}"
            )
        return circle_path(scene.c2w, frames).astype(np.float32)
    if kind == "spiral":
        c2w, bounds = scene.c2w.astype(np.float64), scene.bounds.astype(np.float64)
        return spiral_path(c2w, bounds, frames)[0].astype(np.float32)
    if kind == "spherical":
        return spherical_path(frames).astype(np.float32)
    if kind == "orbit":
        if scene.ndc:
            raise ConfigError(f"--orbit is for captures around an object; {_own_path(scene)}")
        return orbit_path(scene.c2w[scene.i_train], np.zeros(3), frames).astype(np.float32)
    if kind == "interpolate":
        return interpolate_path(scene.c2w[scene.i_train], frames).astype(np.float32)
    raise ConfigError(f"unknown camera path {kind!r}")


def _own_path(scene: Scene) -> str:
    """Advice naming the flag of the scene's own render path."""
    if scene.render_path in ("spiral", "circle", "orbit"):
        return f"use --{scene.render_path} (or no path flag)"
    return f"drop the path flag for its {scene.render_path} path"


def load_path_file(path: Path | None) -> np.ndarray:
    if path is None or not Path(path).is_file():
        raise DataError(f"{path}: camera path file not found; write one with `--poses-out`")
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        raise DataError(
            f"{path}: not a .npy file (no numpy header); a camera path is a .npy of "
            "camera-to-world matrices [F, 3, 4], as --poses-out or inspect-poses --path-out write"
        )
    try:
        poses = np.load(path, allow_pickle=False)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable .npy file ({reason})") from None
    if not isinstance(poses, np.ndarray):  # an .npz archive
        poses.close()
        raise DataError(f"{path}: an .npz archive, not a .npy array of camera-to-world matrices")
    if poses.dtype.kind not in "fiu" or poses.dtype.fields is not None:
        raise DataError(f"{path}: expected numbers, got dtype {poses.dtype}")
    if poses.ndim != 3 or poses.shape[1:] not in ((3, 4), (4, 4), (3, 5)) or len(poses) == 0:
        raise DataError(
            f"{path}: expected camera-to-world matrices [F, 3, 4], got shape {poses.shape}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        poses = poses[:, :3, :4].astype(np.float32)
    if not np.isfinite(poses).all():
        raise DataError(f"{path}: camera path has non-finite values")
    det = np.linalg.det(poses[:, :3, :3].astype(np.float64))  # [F]
    bad = np.flatnonzero(~(np.abs(det) > 1e-6))
    if len(bad):
        shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
        raise DataError(
            f"{path}: {len(bad)} of {len(poses)} camera matrices have no rotation (determinant "
            f"~0; frames {shown}); expected camera-to-world matrices [R | t]"
        )
    return poses


def render_frames(
    model: RadianceModel,
    scene: Scene,
    poses: np.ndarray,
    chunk: int,
    device: torch.device,
    downscale: int = 1,
    ranks: Ranks = SINGLE,
    cameras: Callable[[int], Camera] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (rgb uint8 [H, W, 3], disparity float32 [H, W]) per camera pose [3, 4], in order.
    cameras: the camera of frame k (a camera path file's size and fov); default the scene's
    path camera at each pose.

    Across processes frame k is rendered by rank k % world; each round's frames are gathered
    (as uint8 and float32 tensors) and rank 0 alone yields them, in order; the other ranks
    yield nothing, so every rank must run the loop to its end."""

    def camera_of(index: int) -> Camera:
        return cameras(index) if cameras is not None else scene.path_camera(poses[index])

    def render_one(index: int) -> tuple[np.ndarray, np.ndarray]:
        out = render_view(render_fn, camera_of(index), chunk, device, downscale)
        disparity = _display_disparity(out.depth, out.opacity, scene.ndc)
        return to8b(out.rgb), disparity.cpu().numpy().astype(np.float32)

    def render_fn(rays, near, far):
        return model.render_rays(rays, near, far, train=False)

    opening = camera_of(0).downscaled(downscale)
    # the frames this rank renders, at about the first one's size
    model.prepare_renders(opening.height * opening.width * len(ranks.shard(range(len(poses)))))
    if ranks.world == 1:
        yield from _rendered_ahead(render_one, len(poses))
        return
    size = (opening.height, opening.width)
    blank = np.zeros((*size, 3), np.uint8), np.zeros(size, np.float32)  # past the last frame
    for first in range(0, len(poses), ranks.world):
        mine = first + ranks.rank
        rgb, disparity = render_one(mine) if mine < len(poses) else blank
        rgbs = ranks.all_gather_tensor(torch.from_numpy(rgb))  # world x [H, W, 3]
        disparities = ranks.all_gather_tensor(torch.from_numpy(disparity))  # world x [H, W]
        if ranks.is_main:
            for k in range(min(ranks.world, len(poses) - first)):
                yield rgbs[k].cpu().numpy(), disparities[k].cpu().numpy()


def _rendered_ahead(render_one: Callable[[int], tuple], count: int) -> Iterator[tuple]:
    """render_one(0), ..., render_one(count - 1) in order, each frame rendered on a thread
    of its own while the caller takes the one before (encodes and writes it: ~50 ms a frame
    at 800 x 600, during which the render's workers would otherwise wait)."""
    if count == 0:
        return
    with ThreadPoolExecutor(1) as ahead:
        pending = ahead.submit(render_one, 0)
        for index in range(1, count + 1):
            frame = pending.result()
            if index < count:
                pending = ahead.submit(render_one, index)
            yield frame


def _display_disparity(depth: torch.Tensor, opacity: torch.Tensor, ndc: bool) -> torch.Tensor:
    """Something monotone in closeness for display: 1 - t in NDC (t is ~inverse depth there),
    1 / depth otherwise."""
    t = depth / torch.clamp(opacity, min=1e-6)
    if ndc:
        return torch.clamp(1.0 - t, 0.0, 1.0)
    return 1.0 / torch.clamp(t, min=1e-6)


def colorize_disparity(maps: list[np.ndarray]) -> list[np.ndarray]:
    """Colour-map disparity frames with one normalisation over the whole video."""
    stacked = np.stack(maps)
    lo, hi = np.percentile(stacked, [1, 99])
    scale = max(hi - lo, 1e-6)
    return [colormap((m - lo) / scale) for m in maps]


class VideoWriter:
    """Write frames to a temp file beside `path`, renamed into place on close()."""

    def __init__(self, path: Path, fps: int):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise ConfigError(f"{self.path}: output must end in .mp4 or .gif")
        if fps < 1:
            raise ConfigError(f"--fps must be at least 1, got {fps}")
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise NerfError(f"{self.path}: folder {parent} does not exist; create it first")
        self.tmp = temp_path_beside(self.path)
        self.fps = fps
        self.suffix = suffix
        self.frames: list[np.ndarray] = []
        self._writer = None
        if suffix == ".mp4":
            import imageio.v2 as imageio

            self._writer = imageio.get_writer(
                self.tmp,
                format="FFMPEG",
                mode="I",
                fps=fps,
                codec="libx264",
                quality=8,
                macro_block_size=2,
                pixelformat="yuv420p",
                # x264's veryfast preset at imageio's quality 8 (crf 10): a cup orbit's 120
                # frames at 800 x 600 took 2.75 s of CPU against 6.58 for the default (medium),
                # the same size, 43.7 dB against 44.0 to the frames (bench/README.md)
                output_params=["-preset", "veryfast", "-movflags", "+faststart"],
            )

    def append(self, frame: np.ndarray) -> None:
        if self._writer is not None:
            if frame.shape[0] % 2 or frame.shape[1] % 2:  # yuv420p needs even sizes
                frame = frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
            self._writer.append_data(frame)
        else:
            self.frames.append(frame)

    def close(self) -> Path:
        try:
            if self._writer is not None:
                self._writer.close()
            else:
                import imageio.v3 as iio

                iio.imwrite(
                    self.tmp,
                    np.stack(self.frames),
                    duration=1000.0 / self.fps,
                    loop=0,
                    extension=".gif",
                )
            os.replace(self.tmp, self.path)
        except OSError as exc:
            raise NerfError(f"{self.path}: cannot write video ({exc.strerror or exc})") from None
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        if self.tmp.exists():
            self.tmp.unlink()


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    writer = VideoWriter(path, fps)
    try:
        for frame in frames:
            writer.append(frame)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


ProgressFn = Callable[[int], None]
