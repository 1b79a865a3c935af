"""What the two JSON frame-list formats (Blender's transforms_{split}.json and instant-ngp /
nerfstudio's transforms.json) share: reading the JSON, validating numbers and poses, resolving
image paths inside the scene folder, reading RGB(A) photos, straight-alpha area resizing,
compositing on a background, and reading many images in a thread pool.

Every failure is a one-line DataError naming the file and the fix.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nerfcli.config import DataConfig
from nerfcli.data.images import IMAGE_SUFFIXES, read_image
from nerfcli.errors import ConfigError, DataError

ORTHONORMAL_TOL = 1e-3  # max |R^T R - I| of a stored rotation (as the LLFF loader)
MAX_IMAGE_SIDE = 100_000  # pixels; larger stored sizes are corrupt values, not cameras
EXTENSIONS_TRIED = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
GREY_MODES = ("1", "L", "I;16", "I;16L", "I;16B", "I;16N")


def shown(value, limit: int = 40) -> str:
    """A short one-line repr for messages (values may be huge or hold newlines)."""
    try:
        text = " ".join(repr(value).split())
    except (ValueError, RecursionError):
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_json(path: Path, fix: str) -> dict:
    """A JSON object from `path`; parse errors name the line and column."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text, so not a JSON file; {fix}") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); {fix}"
        ) from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be a scene file; {fix}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise DataError(f"{path}: unusable JSON ({shown(str(exc), 60)}); {fix}") from None
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: expected a JSON object with a 'frames' list, got a {type(data).__name__}; "
            f"{fix}"
        )
    return data


def number(value, where: str, positive: bool = False) -> float:
    """A finite JSON number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: expected a number, got {shown(value)}")
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise DataError(f"{where}: expected a finite number, got {shown(value)}")
    if positive and not result > 0:
        raise DataError(f"{where}: must be positive, got {result:g}")
    return result


def as_float32(values: np.ndarray, where: str, what: str) -> np.ndarray:
    """values as float32, refused when they do not fit (|x| > 3.4e38, or a focal length that
    underflows to 0): the Scene stores float32."""
    with np.errstate(over="ignore", under="ignore"):
        out = np.asarray(values).astype(np.float32)
    if not np.isfinite(out).all():
        raise DataError(f"{where}: {what} too large for float32 (|value| > 3.4e38); rescale it")
    return out


def whole_pixels(value, where: str) -> int:
    """An image side: a whole number of pixels in 1..MAX_IMAGE_SIDE (1080 or 1080.0)."""
    side = number(value, where)
    if not 1 <= side <= MAX_IMAGE_SIDE or side != round(side):
        raise DataError(f"{where}: expected a whole number of pixels in 1..{MAX_IMAGE_SIDE}")
    return int(side)


def parse_pose(value, where: str) -> np.ndarray:
    """A camera-to-world `transform_matrix` [4, 4] float64: finite, bottom row 0 0 0 1, and a
    proper rotation (orthonormal to ORTHONORMAL_TOL, determinant +1)."""
    fix = "it must be a 4x4 camera-to-world matrix [[R, t], [0, 0, 0, 1]]"
    rows = value if isinstance(value, list) else None
    if rows is None or len(rows) != 4 or not all(isinstance(r, list) and len(r) == 4 for r in rows):
        raise DataError(f"{where}: transform_matrix is {shown(value)}; {fix}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for r in rows for v in r):
        raise DataError(f"{where}: transform_matrix holds a non-number; {fix}")
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            m = np.array(rows, dtype=np.float64)
        except OverflowError:
            m = np.full((4, 4), np.inf)
        if not np.isfinite(m).all():
            raise DataError(f"{where}: transform_matrix has non-finite values (NaN or inf); {fix}")
        if np.abs(m[3] - [0.0, 0.0, 0.0, 1.0]).max() > 1e-6:
            raise DataError(f"{where}: transform_matrix bottom row is {m[3].tolist()}; {fix}")
        rot = m[:3, :3]
        det = float(np.linalg.det(rot))
        scale = float(np.cbrt(det)) if det > 0 else 1.0  # a similarity: s R (nerfstudio, ngp)
        err = float(np.abs((rot / scale).T @ (rot / scale) - np.eye(3)).max())
    if not math.isfinite(err) or abs(det) < 1e-9:
        raise DataError(f"{where}: transform_matrix rotation is degenerate (determinant 0); {fix}")
    if not err <= ORTHONORMAL_TOL:
        raise DataError(
            f"{where}: transform_matrix rotation is not orthonormal, nor a rotation times one "
            f"scale (max |R^T R / s^2 - I| = {err:.3g} > {ORTHONORMAL_TOL}): a shear or "
            "uneven scale; write camera-to-world rotations"
        )
    if not det > 0:
        raise DataError(f"{where}: transform_matrix rotation is a mirror (determinant -1); {fix}")
    m[:3, :3] = rot / scale  # the camera's axes; the position t stays as written
    return m


def rotation_scale(value) -> float:
    """The uniform scale s of a transform_matrix whose rotation is s R (1 for a rotation);
    parse_pose has checked the matrix."""
    rot = np.array(value, dtype=np.float64)[:3, :3]
    return float(np.cbrt(np.linalg.det(rot)))


def image_key(file_path, where: str) -> str:
    """The normalised relative path of a frame's file_path (duplicates and split lists are
    compared on it): backslashes as slashes (instant-ngp), '.' and '..' folded."""
    if not isinstance(file_path, str) or not file_path.strip() or "\x00" in file_path:
        raise DataError(f"{where}: file_path must be a non-empty path, got {shown(file_path)}")
    return os.path.normpath(file_path.replace("\\", "/")).replace("\\", "/")


def inside(root: Path, key: str, json_path: Path, where: str) -> Path:
    """root / key, refused when it leaves the scene folder (absolute or ../ paths)."""
    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(base, key))
    if os.path.commonpath([base, full]) != base or full == base:
        raise DataError(
            f"{json_path}: {where}: file_path {shown(key)} points outside the scene folder "
            f"{root}; file paths must be relative to the folder of {json_path.name}"
        )
    return Path(full)


def existing_image(path: Path, always_png: bool = False) -> Path | None:
    """The image file a file_path names: as written when it has an image suffix; else, as
    nerf-pytorch, with '.png' appended (`always_png`), or as instant-ngp, the first of
    EXTENSIONS_TRIED that exists. None when there is no such file."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return path if _is_file(path) else None
    tried = (".png",) if always_png else EXTENSIONS_TRIED
    for ext in tried:
        candidate = path.with_name(path.name + ext)
        if _is_file(candidate):
            return candidate
    return path if _is_file(path) else None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system names no file
        return False


def read_rgba(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] (RGB, or grey promoted) or [H, W, 4] (RGBA; grey+alpha promoted);
    other layouts (CMYK, float, 32-bit) are refused naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("RGB", "RGBA"):
                return np.asarray(im)
            if mode in ("LA", "La", "PA", "RGBa"):
                return np.asarray(im.convert("RGBA"))
            if mode == "P":
                return np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
    except Exception as exc:  # Pillow raises many types for damaged files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read image ({shown(reason, 80)}); replace it") from None
    if mode in GREY_MODES:
        return read_image(path)
    raise DataError(f"{path}: unsupported image layout {mode}; save it as 8-bit RGB or RGBA")


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] overlap weights of an area (box) resize, rows summing to 1."""
    edges = np.arange(n_out + 1) * (n_in / n_out)  # output pixel edges in input pixels
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None)
    return (overlap / (n_in / n_out)).astype(np.float32)


def area_resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-averaging resize of a float image [H, W, C] (straight alpha, every channel alike):
    cv2.INTER_AREA's result when shrinking, a plain block mean when the factor divides."""
    h0, w0, c = img.shape
    if (h0, w0) == (height, width):
        return img
    if h0 % height == 0 and w0 % width == 0:  # block mean: a sum of k_h x k_w strided views
        k_h, k_w = h0 // height, w0 // width
        total = np.zeros((height, width, c), dtype=np.float32)
        for dy in range(k_h):
            for dx in range(k_w):
                total += img[dy::k_h, dx::k_w]
        total *= np.float32(1.0 / (k_h * k_w))
        return total
    rows, cols = _area_weights(h0, height), _area_weights(w0, width)
    return np.einsum("hH,HWc,wW->hwc", rows, img, cols, optimize=True).astype(np.float32)


def shrink_to_float(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [H, W, C] -> float32 [height, width, C] in [0, 1]: area_resize(to_float(img)),
    with whole-factor block means summed in integers first (a quarter of the float work)."""
    h0, w0, c = img.shape
    if (h0, w0) == (height, width) or h0 % height or w0 % width:
        return area_resize(to_float(img), height, width)
    k_h, k_w = h0 // height, w0 // width
    total = np.zeros((height, width, c), dtype=np.uint32)
    for dy in range(k_h):
        for dx in range(k_w):
            total += img[dy::k_h, dx::k_w]
    out = total.astype(np.float32)
    out *= np.float32(1.0 / (255.0 * k_h * k_w))
    return out


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1] (x / 255, as the reference)."""
    out = img.astype(np.float32)
    np.divide(out, np.float32(255.0), out=out)
    return out


def composite(
    img: np.ndarray, background: str, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(rgb [H, W, 3], alpha [H, W] or None) from a float image [H, W, 3 or 4]: rgb * a +
    bg * (1 - a) on white or black; "random" composites on black and keeps alpha (opaque
    photos get alpha 1), so training can put each batch on a random colour. `out` [H, W, 3]
    float32 receives rgb when given (no temporary the size of the image)."""
    if out is None:
        out = np.empty(img.shape[:2] + (3,), dtype=np.float32)
    alpha = img[..., 3] if img.shape[-1] == 4 else None
    if alpha is None:
        out[...] = img[..., :3]
    else:
        np.multiply(img[..., :3], alpha[..., None], out=out)
        if background == "white":
            out += 1.0 - alpha[..., None]
    if background != "random":
        return out, None
    return out, alpha if alpha is not None else np.ones(img.shape[:2], dtype=np.float32)


def resolve_background(name: str, default: str, where: str) -> str:
    if name == "auto":
        return default
    if name not in ("white", "black", "random"):
        raise DataError(f"{where}: unknown background {name!r}; choose auto, white, black, random")
    return name


def parallel_map(fn: Callable, items: Sequence) -> list:
    """[fn(x) for x in items] in a thread pool (image decoding releases the GIL); the first
    exception raised by any call is raised here."""
    workers = min(8, os.cpu_count() or 1, max(len(items), 1))
    if workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def load_views(
    files: Sequence[Path],
    target: tuple[int, int],
    background: str,
    check: Callable[[int, tuple[int, int]], None],
) -> tuple[np.ndarray, np.ndarray | None]:
    """(images [N, H, W, 3] float32, alpha [N, H, W] or None): every file read (in a thread
    pool), `check(view, (h, w))` raising on a wrong stored size, area-resized to `target`
    (h, w) as straight-alpha float, then composited on `background`."""
    n = len(files)
    images = np.empty((n, *target, 3), dtype=np.float32)
    alpha = np.empty((n, *target), dtype=np.float32) if background == "random" else None

    def work(i: int) -> None:
        img = read_rgba(files[i])
        check(i, img.shape[:2])
        a = composite(shrink_to_float(img, *target), background, out=images[i])[1]
        if alpha is not None:
            alpha[i] = a

    parallel_map(work, range(n))
    return images, alpha


def views_text(names: Sequence[str], limit: int = 5) -> str:
    listed = ", ".join(shown(n, 60) for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return listed + more


def check_json_kind(fmt: str, data: DataConfig) -> None:
    """What the JSON formats refuse before planning: scene type forward (NDC needs LLFF's
    frame). (Another format's options are refused by the registry: formats.check_options.)"""
    if data.scene_type == "forward":
        raise ConfigError(
            f"--scene-type forward (NDC) needs an LLFF capture (poses_bounds.npy); this {fmt} "
            "scene trains as object or unbounded"
        )
