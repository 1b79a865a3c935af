"""The frame plan of an LLFF capture (nerfcli.data.plan), from poses_bounds.npy alone (no
image is decoded; the file is read once and kept in the plan for the load).

- scene kind: "forward" (NDC, nerf-pytorch's path) when every view lies within
  cameras.SURROUND_SPREAD_DEG (45 deg) of the mean viewing direction, else "unbounded"
  (fern's views spread 10 deg, cup's 74 deg); --spherify is "object" in nerf-pytorch's
  spherified frame. A given kind is kept (object and unbounded use the walk-around frame).
- factor: the shared auto rule on the stored hwf (fern's 4032 -> 8, cup's 800 -> 1).
- frame: spherified (--spherify), reference (forward), else walk-around (llff_unbounded).
- cameras: each view's from sparse/0 when the folder holds a COLMAP model and --llff-camera
  is off (matched by name at load, llff_colmap), else poses_bounds.npy's one camera.
"""

from __future__ import annotations

from pathlib import Path

from nerfcli.config import DataConfig
from nerfcli.data.cameras import SURROUND_SPREAD_DEG
from nerfcli.data.formats.llff_colmap import model_dir
from nerfcli.data.formats.llff_config import LlffConfig
from nerfcli.data.formats.llff_unbounded import classify
from nerfcli.data.formats.poses_bounds import PosesBounds, read_poses_bounds
from nerfcli.data.plan import Choice, FramePlan, factor_choice, given_kind
from nerfcli.errors import ConfigError


def auto_kind(pb: PosesBounds) -> Choice:
    """forward or unbounded from the views' spread, with the reason `nerf train` prints."""
    kind, spread = classify(pb)
    if kind == "surround":
        why = f"surround capture: views spread {spread:.0f} deg > {SURROUND_SPREAD_DEG:.0f}"
        value = "unbounded"
    else:
        why = f"forward-facing: views spread {spread:.0f} deg <= {SURROUND_SPREAD_DEG:.0f}, NDC"
        value = "forward"
    return Choice(value, f"scene type: {value} ({why}); --scene-type to override", True)


def plan_kind(pb: PosesBounds, data: DataConfig) -> Choice:
    """The scene kind and why; ConfigError for --spherify with a kind other than object."""
    given = data.scene_type
    if LlffConfig.of(data).spherify:
        if given not in ("auto", "object"):
            raise ConfigError(
                f"--spherify is nerf-pytorch's spherified object frame; it cannot be scene "
                f"type {given}: drop --spherify or --scene-type"
            )
        return Choice("object", "scene type: object (--spherify: nerf-pytorch's frame)", False)
    if given != "auto":
        return given_kind(given)
    return auto_kind(pb)


def frame_choice(kind: Choice, spherify: bool) -> Choice:
    if spherify:
        return Choice("spherified", "frame: spherified poses, circle path (--spherify)", False)
    if kind.value == "forward":
        return Choice(
            "reference", "frame: nerf-pytorch's (bd_factor rescale, recentre), spiral path", True
        )
    return Choice(
        "walk-around",
        "frame: walk-around (the cameras' focus at the origin, the capture's up along +z), "
        "orbit path",
        True,
    )


def plan_cameras(root: Path, llff_camera: bool) -> Choice:
    if llff_camera:
        return Choice("poses_bounds.npy", "cameras: poses_bounds.npy's one (--llff-camera)", False)
    if model_dir(root) is not None:
        return Choice(
            "sparse/0", "cameras: each view's from sparse/0 (--llff-camera: the one camera)", True
        )
    return Choice("poses_bounds.npy", "cameras: poses_bounds.npy's one (no sparse/0)", True)


def plan_frame(path: Path, data: DataConfig) -> FramePlan:
    """The plan of the LLFF capture at `path` (folder or poses_bounds.npy) under `data`."""
    options = LlffConfig.of(data)
    pb = read_poses_bounds(path)
    kind = plan_kind(pb, data)
    factor = factor_choice(data.factor, int(pb.height), int(pb.width))
    frame = frame_choice(kind, options.spherify)
    cameras = plan_cameras(pb.path.parent, options.llff_camera)
    # NDC: forward scenes unless data.ndc=false; `nerf rays --spherify --ndc` keeps it asked
    ndc = data.ndc and (kind.value == "forward" or options.spherify)
    return FramePlan(
        format="llff",
        kind=str(kind.value),
        factor=int(factor.value),
        frame=str(frame.value),
        ndc=bool(ndc),
        cameras=str(cameras.value),
        choices={"scene_type": kind, "factor": factor, "frame": frame, "cameras": cameras},
        capture=pb,
    )
