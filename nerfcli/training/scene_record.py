"""The Scene as a checkpoint stores it: a dict of tensors, numbers, strings and lists (no
pickled classes), checked field by field on load, plus the upgrade of format-1 checkpoints
(LLFF-only scene metadata with one focal length: data.formats.llff_record) and of records
written before the frame plan."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerfcli.data.formats import frame_of_record
from nerfcli.data.formats.llff_record import upgrade_v1
from nerfcli.data.plan import FRAMES
from nerfcli.data.scene import BACKGROUNDS, KINDS, Scene

ARRAYS = {
    "c2w": (-1, 3, 4),
    "K": (-1, 3, 3),
    "bounds": (-1, 2),
    "render_poses": (-1, 3, 4),
    "world_from_file": (4, 4),
    "scene_box": (2, 3),
    "distortion": (-1, 6),
}
NOT_STORED = ("images", "alpha", "depths")


def scene_record(scene: Scene) -> dict:
    """Scene metadata -> a dict that torch.save writes and weights_only loading reads back."""
    out: dict[str, Any] = {}
    for f in fields(Scene):
        if f.name in NOT_STORED:
            continue
        value = getattr(scene, f.name)
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, Path):
            value = str(value.resolve())
        elif f.name == "image_files":
            value = [Path(v).name for v in value]
        out[f.name] = value
    return out


def scene_from_record(data: Any) -> Scene:
    """The stored dict -> Scene (no images); ValueError names the first bad entry."""
    if not isinstance(data, dict):
        raise _bad("scene: expected a dict")
    data = upgrade_kind(data)
    kwargs: dict[str, Any] = {}
    for f in fields(Scene):
        if f.name in NOT_STORED or f.name not in data:
            continue
        value = data[f.name]
        kwargs[f.name] = value.numpy() if isinstance(value, torch.Tensor) else value
    for name in ("root", "format", "c2w", "K", "height", "width", "near", "far", "splits"):
        if name not in kwargs:
            raise _bad(f"scene.{name}: missing")
    kwargs["root"] = Path(kwargs["root"]) if isinstance(kwargs["root"], str) else kwargs["root"]
    scene = Scene(**kwargs)
    _check_scene(scene)
    return scene


# Before the frame plan a record's kind was ndc / box / unbounded, with no ndc or frame.
OLD_KINDS = {"ndc": "forward", "box": "object"}


def upgrade_kind(record: dict) -> dict:
    """A record written before the frame plan in today's vocabulary: kind ndc -> forward
    (ndc), box -> object; the frame from the render path, as the format says (LLFF: spiral
    is the reference frame, where kind unbounded was nerf-pytorch's frame without NDC, now
    forward; circle: spherified; orbit: walk-around); other formats' is their file's."""
    if "ndc" in record or not isinstance(record.get("kind", "ndc"), str):
        return record
    out = dict(record)
    kind = out.get("kind", "ndc")  # the old Scene's default
    out["ndc"] = kind == "ndc"
    frame = frame_of_record(str(out.get("format")), str(out.get("render_path")))
    if kind == "unbounded" and frame == "reference":
        kind = "forward"
    out["kind"], out["frame"] = OLD_KINDS.get(kind, kind), frame
    return out


def _bad(what: str) -> ValueError:
    return ValueError(f"{what} (the file is damaged or was not written by nerfcli)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_scene(scene: Scene) -> None:
    """Types and shapes of what eval, render-video and --resume read."""
    if not isinstance(scene.root, Path) or not isinstance(scene.format, str):
        raise _bad("scene.root/format: expected strings")
    for name in ("height", "width", "factor"):
        if not _is_int(getattr(scene, name)) or getattr(scene, name) < 1:
            raise _bad(f"scene.{name}: expected a whole number >= 1")
    for name in ("near", "far", "scale", "pixel_center"):
        if not _is_real(getattr(scene, name)) or not math.isfinite(getattr(scene, name)):
            raise _bad(f"scene.{name}: expected a finite number")
    if not scene.near < scene.far:
        raise _bad("scene: need near < far")
    if scene.kind not in KINDS or scene.background not in BACKGROUNDS:
        raise _bad(f"scene.kind/background: expected one of {KINDS} / {BACKGROUNDS}")
    if scene.frame not in FRAMES or not isinstance(scene.ndc, bool):
        raise _bad(f"scene.frame/ndc: expected one of {FRAMES} / a bool")
    for name, shape in ARRAYS.items():
        value = getattr(scene, name)
        if value is None and name in ("scene_box", "distortion"):
            continue
        if (
            not isinstance(value, np.ndarray)
            or value.dtype.kind != "f"
            or value.ndim != len(shape)
            or any(want not in (-1, got) for want, got in zip(shape, value.shape))
            or not np.isfinite(value).all()
        ):
            raise _bad(f"scene.{name}: expected a finite float array shaped {shape}")
    views = len(scene.c2w)
    if views < 1 or len(scene.K) != views or len(scene.bounds) != views:
        raise _bad("scene.c2w/K/bounds: expected one of each per view")
    if scene.distortion is not None and len(scene.distortion) != views:
        raise _bad("scene.distortion: expected one row per view")
    if not (np.abs(scene.K[:, :2, :2]).max() > 0 and (scene.K[:, 0, 0] > 0).all()):
        raise _bad("scene.K: need positive focal lengths")
    if not isinstance(scene.splits, dict) or not all(
        isinstance(v, list) and all(_is_int(i) and 0 <= i < views for i in v)
        for v in scene.splits.values()
    ):
        raise _bad(f"scene.splits: expected lists of view numbers below {views}")
    if not isinstance(scene.image_files, list) or not all(
        isinstance(v, str) for v in scene.image_files
    ):
        raise _bad("scene.image_files: expected a list of strings")
    if not isinstance(scene.source, dict) or not isinstance(scene.render_path, str):
        raise _bad("scene.source/render_path: expected a dict and a string")


__all__ = ["scene_from_record", "scene_record", "upgrade_kind", "upgrade_v1"]
