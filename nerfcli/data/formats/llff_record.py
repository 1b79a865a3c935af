"""The format-1 checkpoint (nerfcli before the format-neutral Scene: LLFF scene metadata with
one focal length, data.white_bkgd) in the format-2 layout; nerfcli.training.checkpoint calls
it on load."""

from __future__ import annotations

import numpy as np
import torch

from nerfcli.data.cameras import intrinsics


def upgrade_v1(payload: dict) -> dict:
    """A format-1 checkpoint (LLFF scene metadata, data.white_bkgd) in format-2 layout: the
    single focal becomes per-view K, the rescale and recentre transforms become
    world_from_file, the flags become kind, splits and background. The weights are unchanged."""
    old = payload.get("scene")
    config = payload.get("config")
    if not isinstance(old, dict) or not isinstance(config, dict):
        return payload  # let the usual checks name what is missing
    out = dict(payload)
    data = dict(config.get("data") or {})
    white = bool(data.pop("white_bkgd", False))
    data.setdefault("background", "white" if white else "black")
    out["config"] = {**config, "data": data}

    def array(name: str) -> np.ndarray:
        value = old.get(name)
        return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)

    try:
        c2w = array("c2w")
        transform = array("transform").astype(np.float64)
        bd_scale = float(old["scale"])
        spherify, ndc = bool(old["spherify"]), bool(old["ndc"])
        K = intrinsics(int(old["height"]), int(old["width"]), float(old["focal"]))
        world_from_file = transform @ np.diag([bd_scale, bd_scale, bd_scale, 1.0])
        record = {
            "root": old["root"],
            "format": "llff",
            "c2w": c2w,
            "K": np.repeat(K[None], len(c2w), 0),
            "height": old["height"],
            "width": old["width"],
            "near": old["near"],
            "far": old["far"],
            "bounds": array("bounds"),
            "splits": {"train": list(old["i_train"]), "val": [], "test": list(old["i_test"])},
            "render_poses": array("render_poses"),
            "render_path": "circle" if spherify else "spiral",
            "kind": "object" if spherify else "forward",
            "ndc": ndc,
            "frame": "spherified" if spherify else "reference",
            "scene_box": np.array([[-1.0] * 3, [1.0] * 3], np.float32) if spherify else None,
            "background": data["background"],
            "world_from_file": world_from_file,
            "factor": old["factor"],
            "scale": float(np.cbrt(abs(np.linalg.det(world_from_file[:3, :3])))),
            "image_files": list(old.get("image_names", [])),
            "source": {
                "stored_height": old.get("stored_height", 0),
                "stored_width": old.get("stored_width", 0),
                "stored_focal": old.get("stored_focal", 0.0),
                "spherify": spherify,
                "bd_scale": bd_scale,
                "upgraded_from_format": 1,
            },
        }
    except (KeyError, TypeError, ValueError, AttributeError, np.linalg.LinAlgError):
        return payload
    record = {
        k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
        for k, v in record.items()
    }
    out["scene"] = record
    out["format_version"] = 2
    return out
