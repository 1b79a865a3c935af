"""The frame plan: what a capture trains as, settled once before anything is loaded, in one
vocabulary that the formats, the Scene, the model profiles, the run's config and the
checkpoint all share. Nothing else translates between kinds.

    scene kind  forward    rays in NDC (nerf-pytorch's forward-facing path; with
                           data.ndc=false the same frame in world coordinates)
                object     a bounded box (Blender; LLFF's spherified frame; --scene-type object)
                unbounded  the room around the cameras, contracted outside a box
    frame       reference  LLFF as nerf-pytorch: bd_factor rescale, recentre, spiral path
                spherified LLFF's spherified poses, circle path (data.llff's option)
                walk-around LLFF around its cameras' focus, capture's up along +z, orbit path
                file       the file's own frame (Blender), or its focus-normalised one
                           (transforms.json)

The registry (nerfcli.data.formats.plan_frame) asks the capture's format for each choice
(`plan_kind`, `plan_factor`, ... in the format module) and keeps the parsed capture file
(LLFF: poses_bounds.npy) so loading does not read it again. The factor rule is shared:
the smallest power of two f with longer side / f <= MAX_SIDE (1000 px), so the longer side
lands in 500-1000 px: fern's 4032 -> 8 (nerf-pytorch's factor), fox's 1920 -> 2, cup's
800 -> 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SceneKind = Literal["forward", "object", "unbounded"]
SCENE_KINDS: tuple[str, ...] = ("forward", "object", "unbounded")
FRAMES: tuple[str, ...] = ("reference", "spherified", "walk-around", "file")
MAX_SIDE = 1000  # px: the longer side of the training images at the auto factor, at most


@dataclass(frozen=True)
class Choice:
    value: str | int
    reason: str  # one line: why (the rule and its numbers, or the flag that set it)
    auto: bool  # chosen from the capture (True) or given (flag, preset, --set)

    def to_dict(self) -> dict:
        return {"value": self.value, "reason": self.reason, "auto": self.auto}


@dataclass(frozen=True)
class FramePlan:
    """One capture's settled choices, each with its reason (`choices`: "scene_type",
    "factor", "frame", "cameras"). `capture` is the format's parsed capture file, kept so
    the load does not read it again; it is never stored."""

    format: str
    kind: str  # SCENE_KINDS
    factor: int
    frame: str  # FRAMES
    ndc: bool  # rays in NDC: forward scenes unless data.ndc=false
    cameras: str  # where the intrinsics come from: "sparse/0", "poses_bounds.npy", "file"
    choices: dict[str, Choice] = field(default_factory=dict, compare=False)
    capture: Any = field(default=None, compare=False, repr=False)

    @property
    def profile_kind(self) -> str:
        """The scene kind whose model defaults apply: forward without NDC renders in world
        coordinates inside the unit cube, as an object does."""
        return "object" if self.kind == "forward" and not self.ndc else self.kind

    def to_dict(self) -> dict:
        """The plan as a checkpoint and `--json` store it (no capture)."""
        return {
            "format": self.format,
            "kind": self.kind,
            "factor": self.factor,
            "frame": self.frame,
            "ndc": self.ndc,
            "cameras": self.cameras,
            "reasons": {name: choice.reason for name, choice in self.choices.items()},
        }


def auto_factor(longer_side: int) -> int:
    """The smallest power of two f with longer_side / f <= MAX_SIDE."""
    f = 1
    while longer_side / f > MAX_SIDE:
        f *= 2
    return f


def factor_choice(given: int, height: int, width: int) -> Choice:
    """`given` when > 0 (with what the auto rule would pick), else the auto rule on the
    photos' stored size."""
    f = auto_factor(max(height, width))
    if given > 0:
        return Choice(
            given,
            f"factor {given} (the preset, --set or --factor; the auto rule picks {f} for "
            f"{width} x {height} photos)",
            False,
        )
    return Choice(
        f,
        f"factor {f}: photos {width} x {height}, the smallest power of two bringing the "
        f"longer side to <= {MAX_SIDE} px ({max(height, width) // f} px); --factor to override",
        True,
    )


def given_kind(given: str) -> Choice:
    """A scene kind set by --scene-type or the config."""
    return Choice(given, f"scene type: {given} (--scene-type, or the config)", False)


__all__ = [
    "FRAMES",
    "MAX_SIDE",
    "SCENE_KINDS",
    "Choice",
    "FramePlan",
    "SceneKind",
    "auto_factor",
    "factor_choice",
    "given_kind",
]
