"""What `nerf inspect-poses` reports for a Blender or transforms.json capture: a summary of the
Scene the loader builds (views and splits, image size, intrinsics, bounds, the training frame,
the capture kind, the render path) and a list of checks.

Fatal (a DataError, no report): anything the loader refuses (malformed JSON, missing keys, bad
matrices, unknown camera models, paths escaping the folder, duplicate or missing frames; see
nerfcli/data/formats/). Everything else is a check:

| check | fails when |
|---|---|
| `views` | fewer than 2 training views |
| `rotation` | a camera rotation is not orthonormal with determinant +1 (after normalisation) |
| `intrinsics` | a focal length is not positive, or a principal point lies outside its image |
| `positions` | every camera sits at one point |
| `images` | an image file is missing, unreadable, or not the size the file says |
| `sequence`, `upright` | photos named in capture order turn away and back, or a camera is upside down (nerfcli.data.pose_checks) |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerfcli.data.cameras import capture_kind, view_spread_deg
from nerfcli.data.images import image_size
from nerfcli.data.inspect.report import Check, Report, Row, number
from nerfcli.data.pose_checks import check_rows
from nerfcli.data.scene import Scene
from nerfcli.errors import DataError


@dataclass
class SceneReport(Report):
    path: Path
    format: str
    num_views: int
    splits: dict[str, int]  # views per split
    test_views: list[int]
    stored_height: int  # as the files are
    stored_width: int
    factor: int
    height: int  # as loaded (factor, half_res)
    width: int
    focal_x: float  # median over views, at the loaded size
    focal_y: float
    stored_focal_x: float  # the same at the stored size (as the file says: fl_x, fl_y)
    stored_focal_y: float
    focal_range: list[float]  # [min, max] fx over views
    fov_x_deg: float
    fov_y_deg: float
    camera_model: str
    distorted_views: int
    pixel_center: float
    near: float
    far: float
    kind: str  # ndc, box or unbounded
    background: str
    position_extent: list[float]  # [3] max - min of the camera centres (training frame)
    mean_baseline: float | None
    view_spread_deg: float
    capture: str  # forward-facing or surround
    render_path: str
    render_frames: int
    world_from_file: list[list[float]]
    source: dict = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    scene: Scene | None = field(default=None, repr=False)

    def summary_rows(self) -> list[Row]:
        splits = ", ".join(f"{n} {name}" for name, n in self.splits.items() if n)
        distortion = f", distortion in {self.distorted_views} views" if self.distorted_views else ""
        low, high = self.focal_range
        focal = f"{self.focal_x:.2f} x {self.focal_y:.2f} px" + (
            f" (views {low:.1f}..{high:.1f})" if high - low > 1e-3 * high else ""
        )
        return [
            Row("format", self.format),
            Row("views", f"{self.num_views} ({splits})"),
            Row(
                "image size (H x W)",
                f"{self.stored_height} x {self.stored_width} stored; "
                f"{self.height} x {self.width} loaded (factor {self.factor})",
            ),
            Row(
                "focal",
                f"{self.stored_focal_x:.2f} x {self.stored_focal_y:.2f} px stored; {focal} loaded",
            ),
            Row(
                "field of view",
                f"{self.fov_x_deg:.1f} deg horizontal, {self.fov_y_deg:.1f} vertical",
            ),
            Row("camera", f"{self.camera_model}{distortion}; pixel centres +{self.pixel_center:g}"),
            Row("ray bounds", f"near {self.near:.4g}, far {self.far:.4g} ({self.kind})"),
            Row("background", self.background),
            Row(
                "camera extent",
                "x {:.3g}, y {:.3g}, z {:.3g} (training frame)".format(*self.position_extent),
            ),
            Row("mean neighbour baseline", number(self.mean_baseline, 3)),
            Row(
                "capture",
                f"{self.capture} (views within {self.view_spread_deg:.0f} deg of their mean "
                f"direction); `nerf train` picks scene type {self.kind}",
            ),
            Row("render path", f"{self.render_path}, {self.render_frames} frames"),
        ]


def inspect_scene(path: Path, scene: Scene) -> SceneReport:
    """The report on a capture's Scene as its format loaded it (image headers only): what
    the Blender and transforms.json formats' `inspect` return."""
    fx, fy = scene.K[:, 0, 0].astype(np.float64), scene.K[:, 1, 1].astype(np.float64)
    stored_h = int(scene.source.get("stored_height", scene.height * scene.factor))
    stored_w = int(scene.source.get("stored_width", scene.width * scene.factor))
    centres = scene.c2w[:, :3, 3].astype(np.float64)  # [N, 3]
    baseline = None
    if len(centres) >= 2:
        distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)  # [N, N]
        np.fill_diagonal(distances, np.inf)
        baseline = float(distances.min(1).mean())
    focal_x, focal_y = float(np.median(fx)), float(np.median(fy))
    report = SceneReport(
        path=path,
        format=scene.format,
        num_views=scene.num_views,
        splits={key: len(value) for key, value in scene.splits.items()},
        test_views=list(scene.i_test),
        stored_height=stored_h,
        stored_width=stored_w,
        factor=scene.factor,
        height=scene.height,
        width=scene.width,
        focal_x=focal_x,
        focal_y=focal_y,
        stored_focal_x=focal_x * stored_w / scene.width,
        stored_focal_y=focal_y * stored_h / scene.height,
        focal_range=[float(fx.min()), float(fx.max())],
        fov_x_deg=math.degrees(2.0 * math.atan(0.5 * scene.width / focal_x)),
        fov_y_deg=math.degrees(2.0 * math.atan(0.5 * scene.height / focal_y)),
        camera_model=str(scene.source.get("camera_model", "PINHOLE")),
        distorted_views=0
        if scene.distortion is None
        else int(np.any(scene.distortion != 0, axis=1).sum()),
        pixel_center=scene.pixel_center,
        near=scene.near,
        far=scene.far,
        kind=scene.kind,
        background=scene.background,
        position_extent=[float(v) for v in centres.max(0) - centres.min(0)],
        mean_baseline=baseline,
        view_spread_deg=view_spread_deg(scene.c2w),
        capture=capture_kind(scene.c2w),
        render_path=scene.render_path,
        render_frames=len(scene.render_poses),
        world_from_file=np.asarray(scene.world_from_file, dtype=np.float64).tolist(),
        source={k: v for k, v in scene.source.items() if _plain(v)},
        scene=scene,
    )
    report.checks = _checks(scene, (stored_h, stored_w))
    names = [Path(name).name for name in scene.image_files]
    report.checks += [Check(*row) for row in check_rows(names, scene.c2w)]
    return report


def _plain(value) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))


def _checks(scene: Scene, stored: tuple[int, int]) -> list[Check]:
    checks = []
    train = len(scene.i_train)
    checks.append(
        Check(
            "views",
            train >= 2,
            f"{scene.num_views} views: "
            + ", ".join(f"{len(v)} {k}" for k, v in scene.splits.items() if v)
            if train >= 2
            else f"only {train} training view(s); NeRF needs several views with parallax",
        )
    )
    rotation = scene.c2w[:, :3, :3].astype(np.float64)
    err = np.abs(np.einsum("nji,njk->nik", rotation, rotation) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(rotation)
    bad = np.where(~((err <= 1e-3) & (det > 0)))[0]
    checks.append(
        Check(
            "rotation",
            len(bad) == 0,
            "every rotation is orthonormal with determinant +1"
            if len(bad) == 0
            else f"view {int(bad[0])}: rotation is not orthonormal or is a mirror",
        )
    )
    K = scene.K.astype(np.float64)
    inside = (0 <= K[:, 0, 2]) & (K[:, 0, 2] <= scene.width) & (0 <= K[:, 1, 2])
    inside &= K[:, 1, 2] <= scene.height
    good = (K[:, 0, 0] > 0) & (K[:, 1, 1] > 0) & inside
    checks.append(
        Check(
            "intrinsics",
            bool(good.all()),
            "focal lengths positive, principal points inside the images"
            if good.all()
            else f"view {int(np.where(~good)[0][0])}: bad focal length or principal point",
        )
    )
    spread = float(np.ptp(scene.c2w[:, :3, 3], axis=0).max())
    checks.append(
        Check(
            "positions",
            spread > 1e-9,
            "cameras are spread out (see extent and baseline)"
            if spread > 1e-9
            else "all cameras are at the same point; there is no parallax to learn depth from",
        )
    )
    checks.append(_images_check(scene, stored))
    return checks


def _images_check(scene: Scene, stored: tuple[int, int]) -> Check:
    """Every image file exists and has the stored size (headers only, no decoding)."""
    for name in scene.image_files:
        path = Path(name)
        if not path.is_file():
            return Check("images", False, f"{path}: image file missing")
        try:
            size = image_size(path)
        except DataError as exc:
            return Check("images", False, str(exc))
        if size != stored and size != (scene.height, scene.width):
            return Check(
                "images",
                False,
                f"{path}: image is {size[0]} x {size[1]} (H x W), the file says "
                f"{stored[0]} x {stored[1]}",
            )
    count = len(scene.image_files)  # H x W, as the table's image size row
    return Check("images", True, f"{count} images of {stored[0]} x {stored[1]} (H x W)")
