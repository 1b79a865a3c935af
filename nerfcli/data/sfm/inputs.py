"""What `nerf sfm` checks before it starts and how it puts its results in place.

- check_photos: every photo decodes, there are at least three, and (for one shared camera) they
  share one size; the failures name the files.
- Targets: nothing that exists is replaced without --force (sparse/0, poses_bounds.npy,
  transforms.json, colmap/database.db, and for --video the images/ folder).
- commit: the results are built in a temp folder inside the scene and renamed into place one
  by one, so an interrupted run leaves each output either as it was or complete.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nerfcli.data.images import IMAGE_SUFFIXES, list_images
from nerfcli.errors import DataError, NerfError

MIN_PHOTOS = 3
MAX_LISTED = 6  # names quoted in one message before "... and N more"
FRAMES_RECORD = "frames.json"  # in colmap/: which images/ files came from a video


def listing(names: list[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(names[:limit])
    more = len(names) - limit
    return shown + (f", ... and {more} more" if more > 0 else "")


@dataclass
class PhotoCheck:
    names: list[str]  # readable photos, in name order
    size: tuple[int, int]  # (width, height) of most of them
    warnings: list[str] = field(default_factory=list)


def _decode(path: Path) -> tuple[int, int]:
    """(width, height) after fully decoding the file; raises on a corrupt or truncated one."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return int(image.size[0]), int(image.size[1])


def check_photos(
    image_dir: Path, shared_camera: bool, on_progress=None, video: bool = False
) -> PhotoCheck:
    """Decode every photo of image_dir (as the loader lists them) and check count and sizes."""
    if not image_dir.is_dir():
        raise DataError(
            f"{image_dir}: no such folder; put the photos in SCENE/images/, or pass --images DIR "
            "or --video clip.mp4"
        )
    files = list_images(image_dir)
    if not files:
        kinds = ", ".join(IMAGE_SUFFIXES)
        raise DataError(
            f"{image_dir}: no photos ({kinds}); put 20 or more overlapping photos of the subject "
            "there, or pass --video clip.mp4"
        )
    sizes: dict[str, tuple[int, int]] = {}
    unreadable: list[str] = []
    for done, path in enumerate(files, 1):
        try:
            sizes[path.name] = _decode(path)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            unreadable.append(f"{path.name} ({reason})")
        if on_progress is not None:
            on_progress(done, len(files))
    if unreadable:
        raise DataError(
            f"{image_dir}: {len(unreadable)} photo(s) cannot be read: {listing(unreadable, 3)}; "
            "replace them or move them out of the folder, then run again"
        )
    if len(sizes) < MIN_PHOTOS:
        source = "the video gave" if video else f"{image_dir} holds"
        raise DataError(
            f"{source} only {len(sizes)} photo(s); structure from motion needs at least "
            f"{MIN_PHOTOS} overlapping photos, and 20 or more that each overlap their neighbours "
            "work best"
        )
    counts = Counter(sizes.values())
    (width, height), _ = counts.most_common(1)[0]
    odd = [name for name, size in sizes.items() if size != (width, height)]
    check = PhotoCheck(names=sorted(sizes), size=(width, height))
    if odd:
        detail = ", ".join(f"{name} {sizes[name][0]}x{sizes[name][1]}" for name in odd[:3])
        more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
        message = (
            f"{len(odd)} photo(s) differ in size from the other {len(sizes) - len(odd)} "
            f"({width}x{height}): {detail}{more}"
        )
        if shared_camera:
            raise DataError(
                f"{image_dir}: {message}; one shared camera needs one size: resize or remove "
                "them, or use --camera-model OPENCV (a camera per photo)"
            )
        check.warnings.append(f"{message}; NeRF training needs one size (poses_bounds.npy)")
    return check


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Targets:
    """Where the results go (all inside the scene folder unless --images points elsewhere)."""

    scene: Path
    sparse: Path  # sparse/0
    poses_bounds: Path
    transforms: Path | None  # only with --transforms
    colmap_dir: Path  # database and log
    database: Path
    log: Path
    images: Path | None  # only with --video: where the frames go

    def outputs(self) -> list[Path]:
        paths = [self.sparse, self.poses_bounds, self.database]
        return paths + ([self.transforms] if self.transforms is not None else [])


def make_targets(scene: Path, transforms: bool, video: bool) -> Targets:
    colmap_dir = scene / "colmap"
    return Targets(
        scene=scene,
        sparse=scene / "sparse" / "0",
        poses_bounds=scene / "poses_bounds.npy",
        transforms=scene / "transforms.json" if transforms else None,
        colmap_dir=colmap_dir,
        database=colmap_dir / "database.db",
        log=colmap_dir / "sfm.log",
        images=scene / "images" if video else None,
    )


def check_targets(targets: Targets, force: bool) -> None:
    """Refuse to replace existing results without force; for --video, never replace photos
    that did not come from an earlier `nerf sfm --video` run."""
    for path in targets.outputs():
        if not (path.exists() or path.is_symlink()):
            continue
        if not force:
            raise NerfError(f"{path}: already exists; pass --force to replace it")
        should_be_folder = path == targets.sparse
        if path.is_symlink() or path.is_dir() != should_be_folder:
            raise NerfError(f"{path}: exists and is not what nerf sfm writes; move it away first")
    images = targets.images
    if images is None or not images.exists():
        return
    if not images.is_dir() or images.is_symlink():
        raise NerfError(f"{images}: exists and is not a folder; move it away first")
    present = sorted(p.name for p in images.iterdir())
    if not present:
        return
    if not force:
        raise NerfError(
            f"{images}: already holds {len(present)} file(s); pass --force to replace frames "
            "from an earlier --video run, or choose another SCENE folder"
        )
    if set(present) - set(_recorded_frames(targets.colmap_dir)):
        raise NerfError(
            f"{images}: holds photos that did not come from `nerf sfm --video`; --force only "
            "replaces extracted frames, so move them away or choose another SCENE folder"
        )


def _recorded_frames(colmap_dir: Path) -> list[str]:
    try:
        doc = json.loads((colmap_dir / FRAMES_RECORD).read_text())
        return [str(name) for name in doc["frames"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def write_frames_record(path: Path, source: Path, fps: float, sharpest: bool, names: list[str]):
    doc = {"video": str(source), "fps": fps, "sharpest": sharpest, "frames": names}
    path.write_text(json.dumps(doc, indent=2) + "\n")


# ----------------------------------------------------------------------------- commit


def commit(moves: list[tuple[Path, Path]], trash: Path) -> None:
    """Rename each built `source` onto `target`; an old target goes into `trash` first (and is
    put back if the rename fails). Files are replaced atomically by os.replace."""
    trash.mkdir(exist_ok=True)
    for number, (source, target) in enumerate(moves):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir() and target.exists():
                retired = trash / f"{number}-{target.name}"
                os.replace(target, retired)
                try:
                    os.replace(source, target)
                except OSError:
                    os.replace(retired, target)
                    raise
            else:
                os.replace(source, target)
        except OSError as exc:
            raise NerfError(f"{target}: cannot write ({exc.strerror or exc})") from None
