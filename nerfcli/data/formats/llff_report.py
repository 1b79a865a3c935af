"""The report `nerf inspect-poses` gives of an LLFF capture (built by llff_inspect, which
checks every row of poses_bounds.npy, even those the loader refuses): its fields, null where
not computable, and its summary rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nerfcli.data.inspect.report import Check, ImageFolder, Report, Row, number
from nerfcli.data.scene import Scene


@dataclass
class PoseReport(Report):
    """Everything inspect-poses says about one poses_bounds.npy (null where not computable)."""

    path: Path
    num_views: int
    # as stored (full resolution)
    stored_height: int | None
    stored_width: int | None
    stored_focal: float | None
    fov_x_deg: float | None
    fov_y_deg: float | None
    # at --factor
    factor: int
    height: int | None  # loaded, at the factor (as every format's report)
    width: int | None
    focal: float | None
    # depth bounds as stored, over views with finite values
    near_min: float | None
    near_median: float | None
    near_max: float | None
    far_min: float | None
    far_median: float | None
    far_max: float | None
    # split
    llffhold: int
    test_views: list[int]
    train_views: list[int]
    # training frame (after the axis fix, bd_factor rescale, recentering / spherify)
    bd_factor: float
    scale: float | None  # stored translations and bounds were multiplied by this
    rescaled_near_min: float | None
    rescaled_far_max: float | None
    position_extent: list[float] | None  # [3] max - min of camera centres along x, y, z
    mean_baseline: float | None  # mean distance from each camera to its nearest neighbour
    view_spread_deg: float | None  # largest angle between a view direction and the mean one
    capture: str | None  # "forward-facing" or "surround"
    spherify: bool
    render_path: str  # "spiral", "circle" (spherify) or "orbit" (the walk-around frame)
    render_frames: int
    focus_depth: float | None  # spiral focus depth (training units), None otherwise
    # the frame plan `nerf train` settles (nerfcli.data.formats.llff_plan): scene type and frame
    scene_type: str = "auto"
    frame: str | None = None
    image_folders: list[ImageFolder] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    scene: Scene | None = field(default=None, repr=False)  # the training-frame scene, if valid

    def summary_rows(self) -> list[Row]:
        split = (
            f"{len(self.train_views)} train, {len(self.test_views)} test: "
            + ", ".join(map(str, self.test_views[:12]))
            + (" ..." if len(self.test_views) > 12 else "")
        )
        rows = [Row("views", f"{self.num_views} ({split})"), *self._camera_rows()]
        rows += [
            Row(
                "near bound",
                f"min {number(self.near_min)}, median {number(self.near_median)}, "
                f"max {number(self.near_max)}",
            ),
            Row(
                "far bound",
                f"min {number(self.far_min)}, median {number(self.far_median)}, "
                f"max {number(self.far_max)}",
            ),
        ]
        if self.scene is not None:
            rows += self._frame_rows()
        else:
            rows.append(
                Row("training frame", "not computed: the loader refuses these poses (see checks)")
            )
        images = "; ".join(
            f"{folder.folder}/: {folder.count}"
            + (f" of {folder.height} x {folder.width}" if folder.height else "")
            for folder in self.image_folders
        )
        return [*rows, Row("images", images or "none beside the poses (image checks skipped)")]

    def _camera_rows(self) -> list[Row]:
        """Image size, focal and field of view, as stored and at the factor."""
        if self.stored_height is None:
            return [Row("image size (H x W)", "unknown (see the intrinsics check)")]
        return [
            Row(
                "image size (H x W)",
                f"{self.stored_height} x {self.stored_width} full; "
                f"{self.height} x {self.width} at --factor {self.factor}",
            ),
            Row(
                "focal",
                f"{self.stored_focal:.1f} px full; {self.focal:.1f} px at --factor {self.factor}",
            ),
            Row(
                "field of view",
                f"{self.fov_x_deg:.1f} deg horizontal, {self.fov_y_deg:.1f} deg vertical",
            ),
        ]

    def _frame_rows(self) -> list[Row]:
        """The training frame's rows (rescale, extent, capture, render path)."""
        extent = self.position_extent
        capture = (
            f"{self.capture} (views within {self.view_spread_deg:.0f} deg of their mean direction)"
        )
        hint = None
        if self.capture == "forward-facing" and self.spherify:
            hint = "--spherify is meant for surround captures"
        else:
            capture += f"; scene type {self.scene_type}, the {self.frame} frame"
            if self.scene_type == "unbounded" and self.capture == "surround":
                capture += " (--scene-type forward: nerf-pytorch's)"
        if self.focus_depth is not None:
            path = f"spiral, {self.render_frames} frames, focus depth {self.focus_depth:.4g}"
        elif self.render_path == "orbit":
            path = f"orbit, {self.render_frames} frames (around the cameras' focus)"
        else:
            path = f"circle, {self.render_frames} frames (spherified)"
        how = "walk-around: mean camera distance 1" if self.frame == "walk-around" else None
        return [
            Row(
                "rescale",
                f"x{self.scale:.4g} ({how or f'bd_factor {self.bd_factor}'}): near min "
                f"{self.rescaled_near_min:.4g}, far max {self.rescaled_far_max:.4g}",
            ),
            Row(
                "camera extent",
                f"x {extent[0]:.3g}, y {extent[1]:.3g}, z {extent[2]:.3g} (training frame)",
            ),
            Row("mean neighbour baseline", number(self.mean_baseline, 3)),
            Row("capture", capture, hint),
            Row("render path", path),
        ]
