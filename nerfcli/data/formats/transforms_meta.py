"""What a transforms.json says besides its lenses: one frame as read (`Frame`), its train / val /
test split lists (nerfstudio's *_filenames; else every llffhold-th view) and the transforms it
records (nerfstudio's applied_transform / applied_scale, instant-ngp's aabb_scale)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfcli.config import DataConfig
from nerfcli.data.formats.json_frames import image_key, number, shown, views_text
from nerfcli.data.formats.options import format_options
from nerfcli.errors import DataError


@dataclass
class Frame:
    index: int  # position in the file
    key: str  # normalised file_path
    path: Path  # root / key
    image: Path | None  # the full-resolution image, None when absent
    c2w: np.ndarray  # [4, 4] float64, the file's frame
    lens: dict  # top-level intrinsic keys with this frame's overrides


SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TransformsConfig:
    """The transforms.json format's own options (`data.transforms.*`)."""

    skip_missing: bool = False  # drop frames whose image is missing (warned), not an error

    @classmethod
    def of(cls, data: DataConfig) -> TransformsConfig:
        return format_options(cls, data, "transforms")


def _stem(key: str) -> str:
    """A file key without its image extension."""
    base, dot, ext = key.rpartition(".")
    return (
        base if dot and "/" not in ext and "." + ext.lower() in (".png", ".jpg", ".jpeg") else key
    )


def splits_of(json_path: Path, meta: dict, frames: Sequence[Frame], hold: int, skipped: list[str]):
    """(splits, where they came from): the *_filenames lists, else every hold-th view."""
    n = len(frames)
    lists = {s: meta[f"{s}_filenames"] for s in SPLITS if f"{s}_filenames" in meta}
    if not lists:
        test = list(range(0, n, hold)) if hold > 0 else []
        train = [i for i in range(n) if i not in set(test)] or list(range(n))
        return {"train": train, "val": [], "test": test}, f"llffhold {hold}"
    by_key = {_stem(f.key): i for i, f in enumerate(frames)}  # names match with or without
    gone = {_stem(k) for k in skipped}  # their image extension
    out: dict[str, list[int]] = {}
    for split, names in lists.items():
        where = f"{json_path}: {split}_filenames"
        if not isinstance(names, list):
            raise DataError(f"{where} must be a list of file paths, got {shown(names)}")
        found, unknown = set(), []
        for name in names:
            key = image_key(name, where)
            index = by_key.get(_stem(key))
            if index is None and _stem(key) not in gone:
                unknown.append(key)
            elif index is not None:
                found.add(index)
        if unknown:
            raise DataError(
                f"{where} names {len(unknown)} file(s) that are no frame: {views_text(unknown)}; "
                "fix the list or add those frames"
            )
        out[split] = sorted(found)
    held = set(out.get("val", [])) | set(out.get("test", []))
    out.setdefault("train", [i for i in range(n) if i not in held])
    out.setdefault("val", [])
    out.setdefault("test", out["val"])
    return {s: out[s] for s in SPLITS}, "train/val/test_filenames"


def recorded_transforms(meta: dict, json_path: Path, world_from_file: np.ndarray) -> dict:
    """nerfstudio's applied_transform (original -> file, 3x4 or 4x4; with the training frame's
    world_from_original) and applied_scale, instant-ngp's aabb_scale: None when absent."""
    out = {k: None for k in ("applied_transform", "world_from_original")}
    for key in ("applied_scale", "aabb_scale"):
        out[key] = number(meta[key], f"{json_path}: {key}", True) if key in meta else None
    if "applied_transform" in meta:
        rows = meta["applied_transform"]
        if isinstance(rows, list) and len(rows) == 3:
            rows = [*rows, [0.0, 0.0, 0.0, 1.0]]
        ok = isinstance(rows, list) and len(rows) == 4
        ok = ok and all(isinstance(r, list) and len(r) == 4 for r in rows)
        values = (
            [number(v, f"{json_path}: applied_transform") for r in rows for v in r] if ok else []
        )
        if not ok:
            raise DataError(f"{json_path}: applied_transform must be a 3x4 or 4x4 matrix")
        applied = np.array(values).reshape(4, 4)
        out["applied_transform"] = applied.tolist()
        out["world_from_original"] = (world_from_file @ applied).tolist()
    return out
