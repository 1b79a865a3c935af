"""Frames from a video for `nerf sfm --video`: one frame per 1/fps-second window, optionally the
sharpest of each window (variance of the Laplacian, as instant-ngp's colmap2nerf `sharpness`).

Decoding goes through imageio's ffmpeg plugin (imageio-ffmpeg ships the binary). Only numpy and
imageio here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerfcli.errors import DataError

FRAME_NAME = "frame_{:05d}.jpg"  # numbered in time order, so name order is time order
JPEG_QUALITY = 95
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image [H, W(, 3)]: higher is sharper.

    The same measure as OpenCV's `Laplacian(grey, CV_64F).var()` on the interior pixels (instant-
    ngp's colmap2nerf), on grey levels 0..255.
    """
    image = np.asarray(rgb, dtype=np.float32)
    grey = image[..., :3] @ GREY_WEIGHTS if image.ndim == 3 else image  # [H, W]
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    laplacian = (
        grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    )  # [H-2, W-2]
    return float(np.var(laplacian, dtype=np.float64))


@dataclass
class VideoFrames:
    """What extract_frames kept."""

    source: Path
    video_fps: float
    fps: float  # frames kept per second of video
    sharpest: bool
    decoded: int  # frames read from the video
    names: list[str] = field(default_factory=list)  # written frames, in time order
    times: list[float] = field(default_factory=list)  # seconds into the video
    sharpness: list[float] = field(default_factory=list)  # only with sharpest


def _video_meta(video: Path) -> dict:
    import imageio.v3 as iio

    if not video.is_file():
        raise DataError(f"{video}: no such video file")
    try:
        meta = iio.immeta(video, plugin="FFMPEG")
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{video}: not a video ffmpeg can read ({reason}); pass an .mp4, .mov or .avi clip"
        ) from None
    video_fps = float(meta.get("fps") or 0.0)
    if not (math.isfinite(video_fps) and video_fps > 0):
        raise DataError(f"{video}: the video reports no frame rate; re-encode it (e.g. to .mp4)")
    return meta


def extract_frames(
    video: Path,
    out_dir: Path,
    fps: float,
    sharpest: bool = False,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> VideoFrames:
    """Write one JPEG per 1/fps seconds of `video` into out_dir (created): the first frame of
    each window, or with `sharpest` the one with the highest sharpness()."""
    import imageio.v3 as iio

    if not (math.isfinite(fps) and fps > 0):
        raise DataError(f"--fps must be a positive number of frames per second, got {fps}")
    video = Path(video)
    meta = _video_meta(video)
    video_fps = float(meta["fps"])
    duration = float(meta.get("duration") or 0.0)
    expected = (
        int(round(duration * video_fps)) if math.isfinite(duration) and duration > 0 else None
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    result = VideoFrames(video, video_fps, float(fps), sharpest, decoded=0)
    kept: tuple[int, np.ndarray, float] | None = None  # (frame index, rgb, score) of this window
    window = -1

    def flush() -> None:
        if kept is None:
            return
        index, rgb, score = kept
        name = FRAME_NAME.format(len(result.names) + 1)
        try:
            iio.imwrite(out_dir / name, rgb, quality=JPEG_QUALITY)
        except OSError as exc:
            raise DataError(f"{out_dir / name}: cannot write ({exc.strerror or exc})") from None
        result.names.append(name)
        result.times.append(index / video_fps)
        if sharpest:
            result.sharpness.append(score)

    try:
        for index, frame in enumerate(iio.imiter(video, plugin="FFMPEG")):
            result.decoded = index + 1
            rgb = np.ascontiguousarray(np.asarray(frame)[..., :3])
            frame_window = int(math.floor(index * fps / video_fps + 1e-9))
            if frame_window != window:
                flush()
                window, kept = frame_window, None
            if sharpest:
                score = sharpness(rgb)
                if kept is None or score > kept[2]:
                    kept = (index, rgb, score)
            elif kept is None:
                kept = (index, rgb, 0.0)
            if on_progress is not None:
                on_progress(index + 1, expected)
        flush()
    except DataError:
        raise
    except Exception as exc:  # ffmpeg's reader raises several types on a broken stream
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{video}: cannot decode frame {result.decoded + 1} ({reason})") from None
    if not result.names:
        raise DataError(f"{video}: the video holds no frames")
    return result
