"""What `nerf train SCENE` chooses without flags, from the poses and the photos' size alone (no
image is decoded): the scene type and the downsampling factor, each with the reason it prints.

Scene type (data.scene_type auto):
- Blender NeRF-synthetic: "object" (the format knows the box and the background);
- LLFF: "forward" (NDC, nerf-pytorch's path) when every view lies within
  cameras.SURROUND_SPREAD_DEG (45 deg) of the mean viewing direction, else "unbounded";
  fern's views spread 10 deg, cup's 74 deg; --spherify means "object" (nerf-pytorch's
  spherified frame in a box);
- transforms.json: "unbounded" (its frame is the walk-around one; NDC needs LLFF's frame).
An explicit scene type is checked against the format (forward needs LLFF; Blender is an
object).

Factor (data.factor 0 = auto): the smallest power of two f with longer side / f <= MAX_SIDE
(1000 px), so the longer side lands in 500-1000 px: fern's 4032 -> 8 (504 px, nerf-pytorch's
factor), fox's 1920 -> 2, cup's 800 -> 1, a 1280 px phone capture -> 2. Blender stays at 1
(--half-res halves it, as nerf-pytorch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nerfcli.config import DataConfig
from nerfcli.data.cameras import SURROUND_SPREAD_DEG
from nerfcli.errors import ConfigError

MAX_SIDE = 1000  # px: the longer side of the training images at the auto factor, at most


@dataclass(frozen=True)
class Choice:
    value: str | int
    reason: str  # one line: why (the rule and its numbers, or the flag that set it)
    auto: bool  # chosen here (True) or given (flag, preset, --set)

    def to_dict(self) -> dict:
        return {"value": self.value, "reason": self.reason, "auto": self.auto}


def auto_factor(longer_side: int) -> int:
    """The smallest power of two f with longer_side / f <= MAX_SIDE."""
    f = 1
    while longer_side / f > MAX_SIDE:
        f *= 2
    return f


def _format(path: Path, data: DataConfig) -> str:
    from nerfcli.data.formats import detect_format

    return detect_format(path) if data.format == "auto" else data.format


def stored_size(path: Path, fmt: str) -> tuple[int, int]:
    """(height, width) of the photos as stored (LLFF: poses_bounds.npy's hwf)."""
    if fmt == "llff":
        from nerfcli.data.formats.poses_bounds import read_poses_bounds

        pb = read_poses_bounds(path)
        return int(pb.height), int(pb.width)
    from nerfcli.data.formats import transforms

    return transforms.stored_size(path)


def choose_factor(path: Path, data: DataConfig) -> Choice:
    """data.factor when given (> 0), else the auto rule on the stored size (module doc)."""
    fmt = _format(path, data)
    if data.factor > 0:
        auto = "" if fmt == "blender" else _auto_note(path, fmt)
        return Choice(
            data.factor, f"factor {data.factor} (the preset, --set or --factor{auto})", False
        )
    if fmt == "blender":
        half = " at half resolution (--half-res)" if data.half_res else " (--half-res: 400 x 400)"
        return Choice(1, f"factor 1: Blender scenes load at their own size{half}", True)
    height, width = stored_size(path, fmt)
    f = auto_factor(max(height, width))
    return Choice(
        f,
        f"factor {f}: photos {width} x {height}, the smallest power of two bringing the "
        f"longer side to <= {MAX_SIDE} px ({max(height, width) // f} px); --factor to override",
        True,
    )


def _auto_note(path: Path, fmt: str) -> str:
    """'; auto would pick F for W x H photos' (what the rule says about a given factor)."""
    height, width = stored_size(path, fmt)
    return f"; the auto rule picks {auto_factor(max(height, width))} for {width} x {height} photos"


def choose_scene_type(path: Path, data: DataConfig) -> Choice:
    """The scene type (forward, object or unbounded) and why; ConfigError for a type the
    format cannot give."""
    fmt = _format(path, data)
    given = data.scene_type
    if data.spherify:
        if given not in ("auto", "object"):
            raise ConfigError(
                f"--spherify is nerf-pytorch's spherified object frame; it cannot be scene "
                f"type {given}: drop --spherify or --scene-type"
            )
        return Choice("object", "scene type: object (--spherify: nerf-pytorch's frame)", False)
    if given != "auto":
        _check_given(fmt, given)
        return Choice(given, f"scene type: {given} (--scene-type, or the config)", False)
    if fmt == "blender":
        return Choice(
            "object", "scene type: object (Blender scene: known box and background)", True
        )
    if fmt == "transforms":
        return Choice(
            "unbounded",
            "scene type: unbounded (transforms.json capture, normalised around its cameras' "
            "focus); --scene-type to override",
            True,
        )
    from nerfcli.data.formats.llff_unbounded import classify
    from nerfcli.data.formats.poses_bounds import read_poses_bounds

    kind, spread = classify(read_poses_bounds(path))
    if kind == "surround":
        why = f"surround capture: views spread {spread:.0f} deg > {SURROUND_SPREAD_DEG:.0f}"
        value = "unbounded"
    else:
        why = f"forward-facing: views spread {spread:.0f} deg <= {SURROUND_SPREAD_DEG:.0f}, NDC"
        value = "forward"
    return Choice(value, f"scene type: {value} ({why}); --scene-type to override", True)


def _check_given(fmt: str, given: str) -> None:
    if given == "forward" and fmt != "llff":
        raise ConfigError(
            f"--scene-type forward (NDC) needs an LLFF capture (poses_bounds.npy); this {fmt} "
            "scene trains as object or unbounded"
        )
    if fmt == "blender" and given != "object":
        raise ConfigError(
            f"--scene-type {given}: Blender scenes are objects on a known background; "
            "use --scene-type object (the default)"
        )


__all__ = ["MAX_SIDE", "Choice", "auto_factor", "choose_factor", "choose_scene_type"]
