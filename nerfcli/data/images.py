"""Images: listing, reading (any PNG/JPEG layout to RGB or RGBA), area resizing, atomic
writes, and the resize cache (images_{factor}/) kept beside a capture when it may be written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from nerfcli.errors import DataError
from nerfcli.fsutil import atomic_write, current_umask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in name order (text order, as the reference)."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.name,
    )


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3]; grey, grey+alpha, RGBA, palette, 1-bit, 16-bit and CMYK are
    converted; failures are DataErrors."""
    import imageio.v3 as iio
    from PIL import Image

    try:
        with Image.open(path) as opened:  # colour spaces whose channels are not R, G, B
            other_space = opened.mode in ("CMYK", "YCbCr", "LAB", "HSV")
            img = np.asarray(opened.convert("RGB")) if other_space else None
        if img is None:
            img = np.asarray(iio.imread(path))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read image ({reason}); replace or remove it") from None
    if img.dtype == np.bool_:  # 1-bit images
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim == 3 and img.shape[-1] == 2:  # grey + alpha
        img = img[..., :1]
    if img.ndim != 3 or img.shape[-1] not in (1, 3, 4) or img.shape[0] < 1 or img.shape[1] < 1:
        raise DataError(f"{path}: unsupported image layout {img.shape}; expected H x W x 3")
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    img = img[..., :3]
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return img


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image without decoding all of it when the format allows."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            return h, w
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read image ({exc}); replace or remove it") from None


def resize_area(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-averaging (box) resize of a uint8 image; the antialiased way to shrink by a factor."""
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.BOX))


# zlib level of the PNGs written (Pillow's default is 6): a 400 x 400 render encodes in 6.2 ms
# at 1 against 20.0 ms at 6, for a file 12% larger (lossless either way); eval writes three a
# view, 600 for lego's 200 views.
PNG_COMPRESS_LEVEL = 1


def write_image_atomic(path: Path, img: np.ndarray) -> None:
    """Write an image via a temp file in the same folder, then rename (never half-written)."""
    import imageio.v3 as iio

    options = {"compress_level": PNG_COMPRESS_LEVEL} if path.suffix.lower() == ".png" else {}
    with atomic_write(path) as tmp:
        iio.imwrite(tmp, img, extension=path.suffix, **options)


def cache_resized(folder: Path, sources: list[Path], imgs: list[np.ndarray]) -> None:
    """Keep resized images as images_{factor}/ when that can be done atomically; else skip.
    A scene folder without write permission is left alone even where the process could write
    it anyway (root ignores permission bits): someone made it read-only on purpose."""
    if folder.exists():
        return
    try:
        if not folder.parent.stat().st_mode & 0o222 or not os.access(folder.parent, os.W_OK):
            return
    except OSError:
        return
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        os.chmod(tmp, 0o777 & ~current_umask())  # a folder as mkdir makes it, not mkdtemp's 0700
    except OSError:
        return
    try:
        for src, img in zip(sources, imgs, strict=True):
            write_image_atomic(tmp / (src.stem + ".png"), img)
        os.replace(tmp, folder)
    except OSError:
        pass
    finally:
        if tmp.exists():
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()
