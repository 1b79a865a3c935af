"""LLFF's loader core: poses_bounds.npy + image folders -> Scene, as nerf-pytorch's
`load_llff_data` (the image folder for a factor, the llffhold split, the reference, spherified
and walk-around frames). The format module (llff.py) plans the frame and calls
`scene_from_poses_bounds`; llff_inspect reads the same helpers for its report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfcli.data.cameras import intrinsics
from nerfcli.data.formats.llff_colmap import view_cameras
from nerfcli.data.formats.llff_frame import reference_geometry
from nerfcli.data.formats.llff_plan import auto_kind
from nerfcli.data.formats.llff_unbounded import unbounded_frame
from nerfcli.data.formats.poses_bounds import PosesBounds, read_poses_bounds
from nerfcli.data.images import cache_resized, image_size, list_images, read_image, resize_area
from nerfcli.data.plan import SCENE_KINDS
from nerfcli.data.scene import Scene
from nerfcli.errors import DataError, UsageError


def expected_size(pb: PosesBounds, factor: int) -> tuple[int, int]:
    return int(round(pb.height / factor)), int(round(pb.width / factor))


def _folder_matches(files: list[Path], n: int, size: tuple[int, int]) -> bool:
    if len(files) != n:
        return False
    h, w = image_size(files[0])
    return abs(h - size[0]) <= 1 and abs(w - size[1]) <= 1


def find_image_files(root: Path, pb: PosesBounds, factor: int) -> tuple[Path, list[Path], bool]:
    """Pick the image folder for `factor`: (folder, files, needs_resize).

    images_{factor}/ is used when it holds one image per pose at the expected size; otherwise
    images/ is resized in-process. Count mismatches are DataErrors naming both numbers.
    """
    n = pb.num_views
    size = expected_size(pb, factor)
    scaled = root / f"images_{factor}"
    full = root / "images"
    scaled_files = list_images(scaled) if scaled.is_dir() else []
    if factor == 1 and full.is_dir():
        files = list_images(full)
        _check_count(full, files, n, pb.path)
        return full, files, False
    if scaled_files and _folder_matches(scaled_files, n, size):
        return scaled, scaled_files, False
    if full.is_dir():
        files = list_images(full)
        _check_count(full, files, n, pb.path)
        return full, files, True
    if scaled.is_dir():
        _check_count(scaled, scaled_files, n, pb.path)
        return scaled, scaled_files, False
    raise DataError(
        f"{root}: no images_{factor}/ or images/ folder with the photos; put the {n} images "
        "named in poses_bounds.npy order into images/"
    )


def _check_count(folder: Path, files: list[Path], n: int, poses_path: Path) -> None:
    if len(files) != n:
        hint = (
            "remove the images COLMAP did not register (`nerf colmap2poses --prune-images`)"
            if len(files) > n
            else "some photos are missing"
        )
        raise DataError(
            f"{folder}: {len(files)} images but {poses_path.name} has {n} poses; {hint}"
        )


def load_images(
    root: Path, pb: PosesBounds, factor: int, cache: bool = True
) -> tuple[np.ndarray, list[Path]]:
    """Images at `factor` as float32 [N, H, W, 3] in [0, 1], plus their source files."""
    folder, files, needs_resize = find_image_files(root, pb, factor)
    size = expected_size(pb, factor)
    imgs = [read_image(f) for f in files]
    if needs_resize:
        imgs = [resize_area(im, *size) for im in imgs]
        if cache:
            cache_resized(root / f"images_{factor}", files, imgs)
    shapes = {im.shape for im in imgs}
    if len(shapes) > 1:
        first = imgs[0].shape
        odd = next(i for i, im in enumerate(imgs) if im.shape != first)
        raise DataError(
            f"{files[odd]}: size {imgs[odd].shape[1]}x{imgs[odd].shape[0]} differs from "
            f"{files[0].name} ({first[1]}x{first[0]}); all views must share one size"
        )
    h, w = imgs[0].shape[:2]
    aspect_img = w / h
    aspect_pose = pb.width / pb.height
    if abs(aspect_img - aspect_pose) / aspect_pose > 0.02:
        raise DataError(
            f"{folder}: images are {w}x{h} (aspect {aspect_img:.3f}) but {pb.path.name} says "
            f"{pb.width}x{pb.height} (aspect {aspect_pose:.3f}); images and poses do not belong "
            "together"
        )
    return np.stack(imgs, 0).astype(np.float32) / 255.0, files


# ----------------------------------------------------------------------------- Scene


def holdout_split(n: int, llffhold: int) -> tuple[list[int], list[int]]:
    """Every llffhold-th view (0, llffhold, ...) is a test view; the rest train."""
    if llffhold <= 0:
        return list(range(n)), []
    test = list(range(0, n, llffhold))
    train = [i for i in range(n) if i not in test]
    if not train:
        train = list(range(n))
    return train, test


def load_llff_data(
    path: str | Path,
    factor: int = 8,
    bd_factor: float | None = 0.75,
    recenter: bool = True,
    spherify: bool = False,
    llffhold: int = 8,
    render_frames: int = 120,
    load_imgs: bool = True,
    ndc: bool | None = None,
    scene_type: str = "forward",
    per_view_cameras: bool = False,
) -> Scene:
    """Load an LLFF capture folder (or its poses_bounds.npy) into the training frame, exactly
    as nerf-pytorch's load_llff_data, with its keyword arguments (the reference comparisons;
    commands load any format through nerfcli.data.formats.load_scene and a plan). ndc: None means NDC unless spherified (run_nerf.py).
    scene_type: see scene_from_poses_bounds (forward: the reference frame)."""
    if factor < 1:
        raise DataError(f"factor must be >= 1, got {factor}")
    return scene_from_poses_bounds(
        read_poses_bounds(path),
        factor=factor,
        bd_factor=bd_factor,
        recenter=recenter,
        spherify=spherify,
        llffhold=llffhold,
        render_frames=render_frames,
        load_imgs=load_imgs,
        ndc=ndc,
        scene_type=scene_type,
        per_view_cameras=per_view_cameras,
    )


def scene_from_poses_bounds(
    pb: PosesBounds,
    factor: int = 8,
    bd_factor: float | None = 0.75,
    recenter: bool = True,
    spherify: bool = False,
    llffhold: int = 8,
    render_frames: int = 120,
    load_imgs: bool = True,
    ndc: bool | None = None,
    scene_type: str = "forward",
    per_view_cameras: bool = False,
) -> Scene:
    """The training-frame Scene of already validated poses (images from pb's folder if asked).
    scene_type: "forward" (nerf-pytorch's frame: NDC, or spherified with `spherify`), "object"
    or "unbounded" (the walk-around frame of llff_unbounded), "auto" (forward for a
    forward-facing capture, unbounded for a surround one). `spherify` wins over it.
    per_view_cameras: each view's intrinsics from sparse/0 when the folder holds the COLMAP
    model (llff_colmap; poses_bounds.npy's single camera otherwise, as the reference)."""
    if factor < 1:
        raise DataError(f"factor must be >= 1, got {factor}")
    if render_frames < 1:
        raise DataError(f"render_frames must be >= 1, got {render_frames}")
    ndc = not spherify if ndc is None else ndc
    root = pb.path.parent
    images = None
    files: list[Path] = []
    height, width = expected_size(pb, factor)
    if height < 1 or width < 1:
        raise UsageError(
            f"--factor {factor}: shrinks the {pb.width} x {pb.height} (W x H) images of "
            f"{pb.path} to nothing; use a smaller --factor"
        )
    if load_imgs:
        images, files = load_images(root, pb, factor)
        height, width = images.shape[1:3]
    scene_type = effective_scene_type(pb, scene_type, spherify)
    if scene_type == "forward" or spherify:
        geometry = reference_geometry(pb, bd_factor, recenter, spherify, render_frames, ndc)
        geometry["kind"] = scene_type
    else:
        geometry = _walk_around_geometry(pb, render_frames, scene_type)
    facts = geometry.pop("facts")
    i_train, i_test = holdout_split(pb.num_views, llffhold)
    K = np.repeat(intrinsics(int(height), int(width), pb.focal / factor)[None], pb.num_views, 0)
    cameras = None
    if per_view_cameras:
        names = _image_names(root, pb, factor, files)
        cameras = view_cameras(root, pb, names, (int(height), int(width)))
    return Scene(
        root=root,
        format="llff",
        K=K if cameras is None else cameras.K,
        distortion=None if cameras is None else cameras.distortion,
        height=int(height),
        width=int(width),
        splits={"train": i_train, "val": [], "test": i_test},
        background="black",
        pixel_center=0.0 if cameras is None else 0.5,  # COLMAP's pixel centres
        factor=factor,
        image_files=[str(f) for f in files],
        images=images,
        depths=_load_depths(root, files, (int(height), int(width))) if load_imgs else None,
        **geometry,
        source={
            "stored_height": pb.height,
            "stored_width": pb.width,
            "stored_focal": pb.focal,
            "spherify": spherify,
            "cameras": None if cameras is None else cameras.summary,
            **facts,
        },
    )


def _image_names(root: Path, pb: PosesBounds, factor: int, files: list[Path]) -> list[str] | None:
    """The photos' names in view order, as COLMAP knows them: images/ when it holds one per
    pose (LLFF's images_N/ copies may be renamed image000.png ...), else the files loaded or
    found; None without any image folder."""
    full = root / "images"
    if full.is_dir():
        names = [f.name for f in list_images(full)]
        if len(names) == pb.num_views:
            return names
    if files:
        return [f.name for f in files]
    try:
        return [f.name for f in find_image_files(root, pb, factor)[1]]
    except DataError:
        return None


def effective_scene_type(pb: PosesBounds, scene_type: str, spherify: bool) -> str:
    """forward, object or unbounded: spherify is an object (in nerf-pytorch's spherified
    frame); auto follows the views' spread (auto_kind)."""
    if spherify:
        return "object"
    if scene_type == "auto":
        return str(auto_kind(pb).value)
    if scene_type not in SCENE_KINDS:
        raise DataError(f"unknown scene type {scene_type!r}; choose forward, object or unbounded")
    return scene_type


def _walk_around_geometry(pb: PosesBounds, render_frames: int, scene_type: str) -> dict:
    """The Scene fields of the walk-around frame (llff_unbounded): kind unbounded or box."""
    frame = unbounded_frame(pb, render_frames)
    return {
        "c2w": frame.c2w,
        "near": frame.near,
        "far": frame.far,
        "bounds": frame.bounds,
        "render_poses": frame.render_poses,
        "render_path": "orbit",
        "kind": scene_type,
        "ndc": False,
        "frame": "walk-around",
        "scene_box": frame.scene_box,
        "world_from_file": frame.world_from_file,
        "scale": frame.scale,
        "facts": {"centre": frame.method, "focus_point": [float(v) for v in frame.focus]},
    }


def _load_depths(root: Path, files: list[Path], size: tuple[int, int]) -> np.ndarray | None:
    """Ground-truth depth maps (generated scenes): depth/<image stem>.npy, in stored units."""
    folder = root / "depth"
    if not folder.is_dir() or not files:
        return None
    paths = [folder / (f.stem + ".npy") for f in files]
    if not all(p.is_file() for p in paths):
        return None
    try:
        depths = [np.load(p, allow_pickle=False) for p in paths]
    except Exception:
        return None
    if any(d.shape != size for d in depths):
        return None
    return np.stack(depths, 0).astype(np.float32)
