"""LLFF captures: `poses_bounds.npy` + images -> Scene, exactly as the reference nerf-pytorch loads them.

Stored format: N rows of 17 floats; the first 15 are a 3x5 matrix [R | t | hwf] whose rotation
columns are [down, right, back], the last two are the near and far depth bounds of that view.

The math (axis reorder, bd_factor rescale, recentering, spherify, spiral path, llffhold split)
matches nerf-pytorch's `load_llff_data` so numbers and checkpoints compare across tools. The
behaviour does not: every failure is a DataError naming the file and the fix, the full-resolution
images/ folder is never needed just to read a shape, and resizing happens in-process.
"""

from __future__ import annotations

from pathlib import Path

from nerfcli.config import DataConfig
from nerfcli.data.formats.llff_config import LlffConfig
from nerfcli.data.formats.llff_inspect import inspect_poses
from nerfcli.data.formats.llff_plan import plan_frame
from nerfcli.data.formats.llff_scene import (
    find_image_files,
    holdout_split,
    load_llff_data,
    scene_from_poses_bounds,
)
from nerfcli.data.formats.poses_bounds import read_poses_bounds
from nerfcli.data.images import list_images
from nerfcli.data.inspect.report import Report
from nerfcli.data.plan import FramePlan
from nerfcli.data.scene import Scene
from nerfcli.errors import DataError

__all__ = [
    "detect",
    "find_image_files",
    "holdout_split",
    "inspect",
    "list_images",
    "load",
    "load_llff_data",
    "plan_frame",
    "scene_from_poses_bounds",
]

PRESET = "llff"
RENDER_FRAMES = 120  # the default render path's frames (data.render_frames 0)
PHOTOS_RESIZED_FROM = "images"  # photos in images/ are resized by the factor on loading
COLMAP_IS_CAPTURE_WORLD = True  # sparse/0 is the world poses_bounds.npy came from
TRANSFORMS_WORLD = False  # a transforms.json's frames are not in this capture's world


def find_photo(root: Path, name: str, factor: int, split: str) -> Path | None:
    """A view's photo: images_<factor>/ first, then images/ (resized by the factor on loading)."""
    found = [p for p in (root / f"images_{factor}" / name, root / "images" / name) if p.is_file()]
    return found[0] if found else None


CONFIG = LlffConfig  # data.llff: this format's own options
FRAME_FLAGS = {"spherified": "--spherify"}  # what asks for its own frames (messages)
# the frame of a checkpoint record written before the frame plan, by its render path
FRAME_OF_RENDER_PATH = {"spiral": "reference", "circle": "spherified", "orbit": "walk-around"}


def upgrade_data(data: dict) -> dict:
    """A checkpoint's data section from before data.scene_type: an LLFF run without NDC or
    spherify used nerf-pytorch's frame (scene type forward, not today's auto choice)."""
    if "scene_type" in data or data.get("format", "auto") not in ("auto", "llff"):
        return data
    llff = data.get("llff") if isinstance(data.get("llff"), dict) else {}
    spherify = data.get("spherify", llff.get("spherify"))
    if data.get("ndc") is False and not spherify:
        return {**data, "scene_type": "forward"}
    return data


def inspect(path: Path, data: DataConfig) -> Report:
    """inspect-poses' report of the capture under `data` (its factor, split, scene type and
    LLFF options): llff_inspect's, which reads poses_bounds.npy itself and checks every row,
    even those this loader refuses (so it plans no frame first)."""
    options = LlffConfig.of(data)
    return inspect_poses(
        path,
        factor=data.factor,
        bd_factor=options.bd_factor,
        spherify=options.spherify,
        llffhold=data.llffhold,
        render_frames=data.render_frames or RENDER_FRAMES,
        scene_type=data.scene_type,
    )


def detect(root: Path) -> bool:
    return (Path(root) / "poses_bounds.npy").is_file()


def load(
    path: Path, cfg: DataConfig, load_images: bool = True, plan: FramePlan | None = None
) -> Scene:
    """The format registry's entry: the Scene of `plan` with the data config's LLFF settings
    (poses_bounds.npy as the plan read it)."""
    plan = plan or plan_frame(path, cfg)
    options = LlffConfig.of(cfg)
    if plan.factor < 1:
        raise DataError(f"factor must be >= 1, got {plan.factor}")
    return scene_from_poses_bounds(
        plan.capture if plan.capture is not None else read_poses_bounds(path),
        factor=plan.factor,
        bd_factor=options.bd_factor,
        recenter=options.recenter,
        spherify=plan.frame == "spherified",
        llffhold=cfg.llffhold,
        render_frames=cfg.render_frames or RENDER_FRAMES,
        load_imgs=load_images,
        ndc=plan.ndc,
        scene_type=plan.kind,
        per_view_cameras=plan.cameras == "sparse/0",
    )
