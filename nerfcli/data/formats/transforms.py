"""instant-ngp / nerfstudio `transforms.json` captures -> Scene.

Conventions, checked against instant-ngp (src/nerf_loader.cu, include/.../nerf_loader.h) and
nerfstudio (nerfstudio/data/dataparsers/nerfstudio_dataparser.py, cameras/camera_utils.py):
- `transform_matrix`: camera-to-world, OpenGL axes [right, up, back], used as is (the file
  convention of both: instant-ngp's `nerf_matrix_to_ngp` negates columns 1, 2 and cycles the
  world axes only internally).
- Intrinsics `fl_x fl_y cx cy w h` at the top level, each overridable per frame (nerfstudio).
  fl_x falls back to camera_angle_x (fl = 0.5 w / tan(0.5 angle)), fl_y to camera_angle_y,
  then fl_x; cx, cy to the image centre; w, h to the image's size. pixel_center 0.5.
- `camera_model` SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL or OPENCV (no key: OPENCV):
  k1 k2 p1 p2 [k3 k4] or nerfstudio's `distortion_params` [k1 k2 k3 k4 p1 p2], applied
  whatever the label, as both tools do. Fisheye (OPENCV_FISHEYE, `is_fisheye`) and
  FULL_OPENCV's rational k5 k6 are refused (see nerfcli.data.distortion).
- Frames sorted by file_path and numbered in that order (nerfstudio argsorts the names;
  instant-ngp natural-sorts: the same order for zero-padded names such as fox's 0001.jpg).
- Splits: `train/val/test_filenames` when present (no test list: the val list; views in no list
  are unused); else every llffhold-th view (0, 8, ...) is the test split, val empty.
- `file_path` relative to the json's folder, with or without an image extension (the first of
  .png/.jpg/.jpeg that exists, as instant-ngp); paths leaving that folder are refused.
- factor N: `images_N/<file name>` (nerfstudio) for the frames it holds when its first image is
  within a pixel of w/N x h/N (that size is then loaded); other frames are area-resized in
  process to floor(h/N) x floor(w/N); nothing is written. K is scaled by the size ratio
  (new_w / w: 1/N when N divides, as nerfstudio's 1/N with floor).
- Missing images: a DataError listing them; with skip_missing a SkippedFramesWarning and the
  frames dropped (`source["skipped_frames"]`).

Training frame (nerfcli.data.orbit.normalisation): centred on the cameras' focus point (the
least-squares point nearest every optical axis; their mean centre when that is ill-posed or
behind most cameras), mean camera distance scaled to 1, no rotation; `world_from_file` holds
it. nerfstudio's applied_transform / applied_scale and instant-ngp's aabb_scale go to `source`.
Kind "unbounded"; `scene_box` a cube of half-size the largest camera distance (>= 1), so it
holds every camera; near NEAR = 0.05, far 2 sqrt(3) half-size (the cube's diagonal). Render
path: an orbit on the cameras' best-fit circle looking at the focus point (render_frames).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nerfcli.config import DataConfig
from nerfcli.data.formats.json_frames import (
    check_json_kind,
    existing_image,
    image_key,
    inside,
    load_views,
    parse_pose,
    read_json,
    resolve_background,
    rotation_scale,
    shown,
    views_text,
    whole_pixels,
)
from nerfcli.data.formats.transforms_lens import FIX, LENS_KEYS, frame_lens, scaled_intrinsics
from nerfcli.data.formats.transforms_meta import (
    Frame,
    TransformsConfig,
    recorded_transforms,
    splits_of,
)
from nerfcli.data.images import image_size
from nerfcli.data.inspect.scene import SceneReport, inspect_scene
from nerfcli.data.orbit import normalisation, orbit_path
from nerfcli.data.plan import Choice, FramePlan, factor_choice, given_kind
from nerfcli.data.scene import Scene
from nerfcli.errors import DataError, UsageError

NEAR = 0.05
SPLITS = ("train", "val", "test")


class SkippedFramesWarning(UserWarning):
    """Frames dropped by skip_missing because their image file does not exist."""


def detect(root: Path) -> bool:
    """transforms.json in the folder (and no transforms_train.json: that is Blender)."""
    root = Path(root)
    if root.is_file():
        return root.suffix == ".json" and not root.name.startswith("transforms_")
    return (root / "transforms.json").is_file() and not (root / "transforms_train.json").exists()


def locate(path: Path) -> tuple[Path, Path]:
    """(the json file, the scene folder) from a folder or the .json file itself."""
    path = Path(path)
    if path.is_dir():
        if not (path / "transforms.json").is_file():
            raise DataError(f"{path}: no transforms.json in this folder; point at the .json file")
        return path / "transforms.json", path
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder")
    return path, path.parent


def _rotation_scales(meta: dict) -> list[float] | None:
    """[min, max] of the uniform scales s in the frames' s R rotations (nerfstudio and
    instant-ngp accept them; the loader keeps R), None when every rotation is unscaled."""
    scales = [rotation_scale(f["transform_matrix"]) for f in meta["frames"]]
    if max(abs(s - 1.0) for s in scales) <= 1e-6:
        return None
    return [min(scales), max(scales)]


def _read_frames(json_path: Path, root: Path, meta: dict) -> list[Frame]:
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        what = "missing" if "frames" not in meta else f"{shown(frames)}"
        raise DataError(f"{json_path}: 'frames' is {what}; it must be a non-empty list of views")
    top = {k: meta[k] for k in LENS_KEYS if k in meta}
    out, seen, used = [], {}, {}
    for i, frame in enumerate(frames):
        where = f"frame {i}"
        if not isinstance(frame, dict):
            raise DataError(f"{json_path}: {where} is {shown(frame)}, expected an object; {FIX}")
        absent = [k for k in ("file_path", "transform_matrix") if k not in frame]
        if absent:
            raise DataError(f"{json_path}: {where} is missing key(s) {', '.join(absent)}; {FIX}")
        key = image_key(frame["file_path"], f"{json_path}: {where}")
        if key in seen:
            raise DataError(
                f"{json_path}: frames {seen[key]} and {i} both have file_path {shown(key)}; "
                "remove the duplicate"
            )
        c2w = parse_pose(frame["transform_matrix"], f"{json_path}: {where} ({shown(key)})")
        path = inside(root, key, json_path, where)
        image = existing_image(path)
        if image is not None and image in used:  # 'a' and 'a.png' name one file
            raise DataError(
                f"{json_path}: frames {used[image]} and {i} both use {image.name}; "
                "remove the duplicate"
            )
        seen[key] = i
        if image is not None:
            used[image] = i
        lens = {**top, **{k: frame[k] for k in LENS_KEYS if k in frame}}
        out.append(Frame(i, key, path, image, c2w, lens))
    return sorted(out, key=lambda f: f.key)


def _stored_size(json_path: Path, frames: list[Frame]) -> tuple[int, int]:
    """(h, w) shared by every frame: w/h from the file, else from the image header."""
    sizes = []
    for f in frames:
        where = f"{json_path}: frame {f.index} ({shown(f.key)})"
        if "w" in f.lens or "h" in f.lens:
            if not ("w" in f.lens and "h" in f.lens):
                raise DataError(f"{where}: has only one of 'w' and 'h'; give both")
            h = whole_pixels(f.lens["h"], f"{where}: h")
            sizes.append((f, (h, whole_pixels(f.lens["w"], f"{where}: w"))))
        elif f.image is not None:
            sizes.append((f, image_size(f.image)))
    if not sizes:
        raise DataError(f"{json_path}: no 'w' and 'h' keys and no image to read the size from")
    first_frame, first = sizes[0]
    for f, size in sizes:
        if size != first:
            raise DataError(
                f"{json_path}: frame {f.index} ({shown(f.key)}) is {size[1]}x{size[0]} but frame "
                f"{first_frame.index} is {first[1]}x{first[0]}; every view must share one image "
                "size (crop or resize the photos)"
            )
    return first


@dataclass
class Sources:
    files: list[Path | None]  # per frame: the file read, None when missing
    scaled: list[bool]  # per frame: read from images_N/ (already at the target size)
    target: tuple[int, int]  # (h, w) loaded
    folder: str  # "images_N", "resized in-process" or "full resolution"


def _sources(root: Path, frames: list[Frame], factor: int, stored: tuple[int, int]) -> Sources:
    originals = [f.image for f in frames]
    if factor == 1:
        return Sources(originals, [False] * len(frames), stored, "full resolution")
    target = (stored[0] // factor, stored[1] // factor)
    folder = root / f"images_{factor}"
    if folder.is_dir():
        scaled = [existing_image(folder / f.path.name) for f in frames]
        first = next((p for p in scaled if p is not None), None)
        if first is not None:
            size = image_size(first)
            exact = (stored[0] / factor, stored[1] / factor)
            if abs(size[0] - exact[0]) <= 1 and abs(size[1] - exact[1]) <= 1:
                files = [s if s is not None else o for s, o in zip(scaled, originals)]
                flags = [s is not None for s in scaled]
                return Sources(files, flags, size, folder.name)
    return Sources(originals, [False] * len(frames), target, "resized in-process")


def _drop_missing(json_path: Path, frames, sources: Sources, skip: bool) -> list[str]:
    """Keys of the frames without an image: an error, or (skip) dropped from both lists."""
    missing = [f.key for f, p in zip(frames, sources.files) if p is None]
    if not missing:
        return []
    if len(missing) == len(frames):
        raise DataError(
            f"{json_path}: none of the {len(frames)} frames has its image (first: "
            f"{shown(missing[0], 60)}); file paths are relative to the json's folder"
        )
    if not skip:
        raise DataError(
            f"{json_path}: {len(missing)} of {len(frames)} frames have no image file: "
            f"{views_text(missing)}; restore them, or pass --skip-missing to drop those frames"
        )
    warnings.warn(
        f"{json_path}: skipped {len(missing)} frame(s) without an image: {views_text(missing)}",
        SkippedFramesWarning,
        stacklevel=3,
    )
    keep = [i for i, p in enumerate(sources.files) if p is not None]
    frames[:] = [frames[i] for i in keep]
    sources.files = [sources.files[i] for i in keep]
    sources.scaled = [sources.scaled[i] for i in keep]
    return missing


def _load_images(json_path: Path, sources: Sources, stored, background: str):
    def check(view: int, size: tuple[int, int]) -> None:
        expected = sources.target if sources.scaled[view] else stored
        if size != expected:
            said = f"the first of {sources.folder}/ is" if sources.scaled[view] else "w/h say"
            raise DataError(
                f"{sources.files[view]}: image is {size[1]}x{size[0]} but {said} {expected[1]}x"
                f"{expected[0]} ({json_path.name}); fix w/h in the file or replace the image"
            )

    return load_views(sources.files, sources.target, background, check)


def _check_first_size(json_path: Path, sources: Sources, stored: tuple[int, int]) -> None:
    """Without loading images: the first full-resolution image must have the stated w/h."""
    if sources.files[0] is None or sources.scaled[0]:
        return
    first = image_size(sources.files[0])
    if first != stored:
        raise DataError(
            f"{sources.files[0]}: image is {first[1]}x{first[0]} but {json_path.name} says "
            f"w={stored[1]}, h={stored[0]}; fix w/h in the file or replace the image"
        )


def _training_poses(json_path: Path, frames: list[Frame]):
    """(c2w [N, 3, 4] float64 in the training frame, Normalisation, scene-box half-size)."""
    stored = np.stack([f.c2w for f in frames], 0)  # [N, 4, 4]
    norm = normalisation(stored, str(json_path))
    c2w = stored[:, :3, :4].copy()
    c2w[:, :, 3] = (c2w[:, :, 3] - norm.focus) * norm.scale
    half = max(float(np.linalg.norm(c2w[:, :, 3], axis=1).max()), 1.0)
    return c2w, norm, half


def stored_size(path: Path) -> tuple[int, int]:
    """(h, w) of a capture's photos as stored: w/h from the file, else the first image's
    header (the auto factor, nerfcli.data.plan)."""
    json_path, root = locate(path)
    return _stored_size(json_path, _read_frames(json_path, root, read_json(json_path, FIX)))


PRESET = "transforms"
RENDER_FRAMES = 120  # the default render path's frames (data.render_frames 0)
PHOTOS_RESIZED_FROM = None
COLMAP_IS_CAPTURE_WORLD = False
TRANSFORMS_WORLD = True  # its own frames are in this capture's world


def find_photo(root: Path, name: str, factor: int, split: str) -> Path | None:
    """A view's photo: the scene folder, else the first match anywhere below it."""
    if (root / name).is_file():
        return root / name
    return next(iter(sorted(root.rglob(name))), None) if root.is_dir() else None


CONFIG = TransformsConfig  # data.transforms: this format's own options


def plan_frame(path: Path, data: DataConfig) -> FramePlan:
    """unbounded (or object: the same frame in its box), in the file's frame normalised
    around the cameras' focus; the auto factor on the stored size."""
    check_json_kind("transforms", data)
    if data.scene_type != "auto":
        kind = given_kind(data.scene_type)
    else:
        kind = Choice(
            "unbounded",
            "scene type: unbounded (transforms.json capture, normalised around its cameras' "
            "focus); --scene-type to override",
            True,
        )
    factor = factor_choice(data.factor, *stored_size(path))
    frame = Choice("file", "frame: the file's, centred on the cameras' focus, orbit path", True)
    cameras = Choice("file", "cameras: the file's intrinsics and distortion", True)
    return FramePlan(
        format="transforms",
        kind=str(kind.value),
        factor=int(factor.value),
        frame="file",
        ndc=False,
        cameras="file",
        choices={"scene_type": kind, "factor": factor, "frame": frame, "cameras": cameras},
    )


def inspect(path: Path, data: DataConfig) -> SceneReport:
    """inspect-poses' report: the Scene this loader builds (image headers only), summarised
    and checked (nerfcli.data.inspect.scene)."""
    return inspect_scene(Path(path), load(path, replace(data, format="transforms"), False))


def load(
    root: Path, cfg: DataConfig, load_images: bool = True, plan: FramePlan | None = None
) -> Scene:
    """Load a transforms.json capture (its folder, or the .json file) into a Scene."""
    plan = plan or plan_frame(root, cfg)
    json_path, root = locate(root)
    cfg = replace(cfg, factor=plan.factor)
    if cfg.factor < 1:
        raise DataError(f"factor must be >= 1, got {cfg.factor}")
    background = resolve_background(cfg.background, "black", "data.background")
    meta = read_json(json_path, FIX)
    frames = _read_frames(json_path, root, meta)
    stored = _stored_size(json_path, frames)
    lens_of = {f.key: frame_lens(json_path, f, stored) for f in frames}
    sources = _sources(root, frames, cfg.factor, stored)
    if min(sources.target) < 1:
        raise UsageError(
            f"--factor {cfg.factor}: shrinks the {stored[1]} x {stored[0]} (W x H) images of "
            f"{json_path} to nothing; use a smaller --factor"
        )
    skipped = _drop_missing(json_path, frames, sources, TransformsConfig.of(cfg).skip_missing)
    lenses = [lens_of[f.key] for f in frames]
    K, distortion = scaled_intrinsics(lenses, stored, sources.target)
    c2w, norm, half = _training_poses(json_path, frames)
    extras = recorded_transforms(meta, json_path, norm.world_from_file)
    far = 2.0 * math.sqrt(3.0) * half
    splits, split_source = splits_of(json_path, meta, frames, cfg.llffhold, skipped)
    images = alpha = None
    if load_images:
        images, alpha = _load_images(json_path, sources, stored, background)
    else:
        _check_first_size(json_path, sources, stored)
    return Scene(
        root=root,
        format="transforms",
        c2w=c2w.astype(np.float32),
        K=K,
        height=sources.target[0],
        width=sources.target[1],
        near=NEAR,
        far=far,
        bounds=np.tile(np.array([[NEAR, far]], dtype=np.float32), (len(frames), 1)),
        splits=splits,
        render_poses=orbit_path(c2w, np.zeros(3), cfg.render_frames or RENDER_FRAMES).astype(
            np.float32
        ),
        render_path="orbit",
        kind=plan.kind,
        ndc=False,
        frame=plan.frame,
        scene_box=np.array([[-half] * 3, [half] * 3], dtype=np.float32),
        background=background,
        pixel_center=0.5,
        distortion=distortion,
        world_from_file=norm.world_from_file,
        factor=cfg.factor,
        scale=norm.scale,
        image_files=[str(p) for p in sources.files],
        images=images,
        alpha=alpha,
        source={
            "file": json_path.name,
            "camera_model": lenses[0][2],
            **extras,
            "centre": norm.method,
            "focus_point": [float(v) for v in norm.focus],
            "stored_height": stored[0],
            "stored_width": stored[1],
            "image_folder": sources.folder,
            "splits_from": split_source,
            "skipped_frames": skipped,
            "rotation_scale": _rotation_scales(meta),
        },
    )
