"""Blender NeRF-synthetic captures (lego, chair, ...): transforms_{train,val,test}.json + RGBA
PNGs -> Scene, as nerf-pytorch's `load_blender_data` and `run_nerf.py` load them.

Stored format: per split, `camera_angle_x` (horizontal field of view, radians) and `frames`,
each a `file_path` without extension ('./train/r_0' -> train/r_0.png) and a 4x4 camera-to-world
`transform_matrix` in the OpenGL convention (columns [right, up, back]), used as is.

The reference's numbers, kept here:
- views are train, val, test concatenated in that order; `testskip` keeps every testskip-th
  view of val and test (0 or 1: all), train is always complete;
- focal = 0.5 W / tan(0.5 camera_angle_x) (each split's own angle; the reference takes the
  last split's, the same number in every published scene), K's principal point (W/2, H/2),
  pixel_center 0;
- half_res: the float RGBA image is area-resized to H//2 x W//2 (cv2.INTER_AREA, straight
  alpha) FIRST and composited after, focal halved. `factor` > 1 shrinks by that much more the
  same way (factor 1 is full size);
- background: rgb * a + bg * (1 - a), white for "auto" (--white_bkgd); "random" keeps alpha and
  composites on black; RGB images without alpha are used as they are;
- near 2, far 6, no NDC; TensoRF's Blender box [-1.5, 1.5]^3; the render path is the 40 poses
  pose_spherical(theta, -30, 4), theta in linspace(-180, 180, 41)[:-1] (data.render_frames
  N > 0: N poses on the same circle).

Beyond the reference: a missing val or test file gives an empty split; failures are one-line
DataErrors; images are read in a thread pool; load_images=False reads one PNG header only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nerfcli.config import DataConfig
from nerfcli.data.cameras import intrinsics, spherical_path
from nerfcli.data.formats.json_frames import (
    as_float32,
    check_json_kind,
    existing_image,
    image_key,
    inside,
    load_views,
    number,
    parse_pose,
    read_json,
    resolve_background,
    shown,
    views_text,
)
from nerfcli.data.formats.options import format_options
from nerfcli.data.images import image_size
from nerfcli.data.inspect.scene import SceneReport, inspect_scene
from nerfcli.data.plan import Choice, FramePlan, given_kind
from nerfcli.data.scene import Scene
from nerfcli.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
NEAR, FAR = 2.0, 6.0
BLENDER_BOX = np.array([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]], dtype=np.float32)
FIX = "it must hold camera_angle_x and frames of file_path and transform_matrix"


def detect(root: Path) -> bool:
    """A Blender scene: its folder (or the folder of the file given) has transforms_train.json."""
    root = Path(root)
    folder = root.parent if root.is_file() else root
    return (folder / "transforms_train.json").is_file()


@dataclass
class SplitFile:
    """One transforms_{split}.json, validated, its frames already thinned by testskip."""

    name: str
    path: Path
    camera_angle_x: float
    images: list[Path]  # [n] image files (existing)
    c2w: np.ndarray  # [n, 3, 4] float64


def _read_split(root: Path, name: str, skip: int, seen: dict[str, str]) -> SplitFile | None:
    path = root / f"transforms_{name}.json"
    if not path.is_file():
        if name == "train":
            raise DataError(f"{root}: no transforms_train.json; this is not a Blender scene")
        return None
    meta = read_json(path, FIX)
    if "camera_angle_x" not in meta:
        raise DataError(f"{path}: missing key 'camera_angle_x' (horizontal field of view)")
    angle = number(meta["camera_angle_x"], f"{path}: camera_angle_x", positive=True)
    if not angle < math.pi:
        raise DataError(f"{path}: camera_angle_x {angle:g} must be below pi (radians)")
    frames = meta.get("frames")
    if not isinstance(frames, list) or (name == "train" and not frames):
        what = "missing" if "frames" not in meta else f"{shown(frames)}"
        raise DataError(f"{path}: 'frames' is {what}; it must be a non-empty list of views")
    images, poses, missing = [], [], []
    for index, frame in enumerate(frames[::skip]):
        where = f"frame {index * skip}"
        if not isinstance(frame, dict):
            raise DataError(f"{path}: {where} is {shown(frame)}, expected an object; {FIX}")
        absent = [k for k in ("file_path", "transform_matrix") if k not in frame]
        if absent:
            raise DataError(f"{path}: {where} is missing key(s) {', '.join(absent)}; {FIX}")
        key = image_key(frame["file_path"], f"{path}: {where}")
        if key in seen:
            raise DataError(
                f"{path}: {where}: file_path {shown(key)} is already a view of {seen[key]}; "
                "remove the duplicate frame"
            )
        seen[key] = path.name
        poses.append(parse_pose(frame["transform_matrix"], f"{path}: {where}")[:3, :4])
        full = inside(root, key, path, where)
        image = existing_image(full, always_png=True)
        if image is None:
            missing.append(key)
        images.append(image)
    if missing:
        raise DataError(
            f"{path}: {len(missing)} image(s) not found: {views_text(missing)} (file_path + "
            "'.png', relative to the scene folder); restore them"
        )
    c2w = np.stack(poses, 0) if poses else np.zeros((0, 3, 4))
    as_float32(c2w, str(path), "a transform_matrix value")  # the Scene stores float32
    return SplitFile(name, path, angle, images, c2w)


PRESET = "blender"
RENDER_FRAMES = 40  # nerf-pytorch's render path (data.render_frames 0)
PHOTOS_RESIZED_FROM = None  # photos are never resized from another folder
COLMAP_IS_CAPTURE_WORLD = False
TRANSFORMS_WORLD = True  # transforms_*.json frames are in this capture's world


def find_photo(root: Path, name: str, factor: int, split: str) -> Path | None:
    """A view's photo, in its split's folder."""
    path = root / split / name
    return path if path.is_file() else None


@dataclass(frozen=True)
class BlenderConfig:
    """This format's own options (`data.blender.*`)."""

    half_res: bool = False  # load at half resolution (nerf-pytorch --half_res)
    testskip: int = 8  # keep every testskip-th val/test view (0 or 1: all of them)

    @classmethod
    def of(cls, data: DataConfig) -> BlenderConfig:
        return format_options(cls, data, "blender")

    def check(self) -> None:
        if self.testskip < 0:
            raise ConfigError(f"data.blender.testskip must be >= 0, got {self.testskip}")


CONFIG = BlenderConfig  # data.blender: this format's own options


def every_view_data(cfg: DataConfig, testskip: int | None) -> DataConfig:
    """`nerf eval` scores every test view (the papers' protocol) unless testskip is given."""
    return replace(cfg, blender={**cfg.blender, "testskip": 1 if testskip is None else testskip})


def inspect(path: Path, data: DataConfig) -> SceneReport:
    """inspect-poses' report: the Scene this loader builds of every view (testskip 1; image
    headers only), summarised and checked (nerfcli.data.inspect.scene)."""
    data = replace(every_view_data(data, None), format="blender")
    return inspect_scene(Path(path), load(path, data, load_images=False))


def plan_frame(path: Path, data: DataConfig) -> FramePlan:
    """A Blender scene is an object in its file's frame, on its known background; factor 1
    unless given (--half-res halves it at load, as nerf-pytorch)."""
    check_json_kind("blender", data)
    if data.scene_type not in ("auto", "object"):
        raise ConfigError(
            f"--scene-type {data.scene_type}: Blender scenes are objects on a known background; "
            "use --scene-type object (the default)"
        )
    if data.scene_type == "object":
        kind = given_kind("object")
    else:
        kind = Choice(
            "object", "scene type: object (Blender scene: known box and background)", True
        )
    if data.factor > 0:
        factor = Choice(data.factor, f"factor {data.factor} (the preset, --set or --factor)", False)
    else:
        half_res = BlenderConfig.of(data).half_res
        half = " at half resolution (--half-res)" if half_res else " (--half-res halves them)"
        factor = Choice(1, f"factor 1: Blender scenes load at their own size{half}", True)
    frame = Choice("file", "frame: the file's (nerf-pytorch's), spherical render path", True)
    cameras = Choice("file", "cameras: camera_angle_x of each split file", True)
    return FramePlan(
        format="blender",
        kind="object",
        factor=int(factor.value),
        frame="file",
        ndc=False,
        cameras="file",
        choices={"scene_type": kind, "factor": factor, "frame": frame, "cameras": cameras},
    )


def _intrinsics(present: list, stored_width: int, shrink: int, size: tuple[int, int]):
    """(K per view [3, 3], views per split) from each split file's camera_angle_x."""
    K, counts = [], {}
    for s in present:
        focal = 0.5 * stored_width / math.tan(0.5 * s.camera_angle_x) / shrink
        if not 1e-30 < focal < 1e30:
            raise DataError(
                f"{s.path}: camera_angle_x {s.camera_angle_x:g} gives focal {focal:g}; it must "
                "be the horizontal field of view in radians"
            )
        K += [intrinsics(size[0], size[1], focal)] * len(s.images)
        counts[s.name] = len(s.images)
    return K, counts


def load(
    root: Path, cfg: DataConfig, load_images: bool = True, plan: FramePlan | None = None
) -> Scene:
    """Load a Blender scene folder (or one of its transforms_*.json) into a Scene."""
    plan = plan or plan_frame(root, cfg)
    cfg = replace(cfg, factor=plan.factor)
    root = Path(root)
    if root.is_file():
        root = root.parent
    if not root.is_dir():
        raise DataError(f"{root}: no such scene folder")
    if cfg.factor < 1:
        raise DataError(f"factor must be >= 1, got {cfg.factor}")
    background = resolve_background(cfg.background, "white", "data.background")
    seen: dict[str, str] = {}
    options = BlenderConfig.of(cfg)
    skip = options.testskip if options.testskip > 1 else 1
    splits = [_read_split(root, s, 1 if s == "train" else skip, seen) for s in SPLITS]
    present = [s for s in splits if s is not None]
    files = [f for s in present for f in s.images]
    full = image_size(files[0])  # (H, W) of the stored images
    shrink = cfg.factor * (2 if options.half_res else 1)
    height, width = full[0] // shrink, full[1] // shrink
    if height < 1 or width < 1:
        raise DataError(
            f"{files[0]}: shrinking the {full[1]}x{full[0]} images by {shrink} leaves nothing; "
            "use a smaller --factor"
        )
    K, counts = _intrinsics(present, full[1], shrink, (height, width))
    starts = np.cumsum([0] + [counts.get(name, 0) for name in SPLITS])
    index = {name: list(range(starts[i], starts[i + 1])) for i, name in enumerate(SPLITS)}
    images = alpha = None
    if load_images:

        def check(view: int, size: tuple[int, int]) -> None:
            if size != full:
                raise DataError(
                    f"{files[view]}: image is {size[1]}x{size[0]} but the first view is "
                    f"{full[1]}x{full[0]}; every view of a Blender scene must share one size"
                )

        images, alpha = load_views(files, (height, width), background, check)
    n = len(files)
    return Scene(
        root=root,
        format="blender",
        c2w=np.concatenate([s.c2w for s in present], 0).astype(np.float32),
        K=np.stack(K, 0).astype(np.float32),
        height=height,
        width=width,
        near=NEAR,
        far=FAR,
        bounds=np.tile(np.array([[NEAR, FAR]], dtype=np.float32), (n, 1)),
        splits=index,
        render_poses=spherical_path(cfg.render_frames or RENDER_FRAMES).astype(np.float32),
        render_path="spherical",
        kind=plan.kind,
        ndc=False,
        frame=plan.frame,
        scene_box=BLENDER_BOX.copy(),
        background=background,
        pixel_center=0.0,
        distortion=None,
        world_from_file=np.eye(4),
        factor=cfg.factor,
        scale=1.0,
        image_files=[str(f) for f in files],
        images=images,
        alpha=alpha,
        source={
            "camera_angle_x": present[0].camera_angle_x,
            "camera_angles_x": {s.name: s.camera_angle_x for s in present},
            "half_res": bool(options.half_res),
            "testskip": int(options.testskip),
            "split_sizes": {name: counts.get(name, 0) for name in SPLITS},
            "stored_height": int(full[0]),
            "stored_width": int(full[1]),
        },
    )
