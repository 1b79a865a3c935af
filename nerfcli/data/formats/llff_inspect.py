"""What `nerf inspect-poses` reports: a summary of an LLFF capture and a list of checks.

Fatal (a DataError, no report): the path does not exist, or the file is not a numeric .npy
array of N x 17 values (N >= 1) -- nothing else can be said about such a file. A factor that
shrinks the images to nothing is fatal too (it is a bad option, not a property of the data).

Everything else is a check with ok true/false; any failed check makes the CLI exit 1 after
printing the full report, so one run lists every problem, not just the first:

| check | fails when |
|---|---|
| `finite` | a view has NaN or inf among its 17 values |
| `rotation` | a rotation is not orthonormal (max abs(R^T R - I) > 1e-3) or is a mirror (det < 0) |
| `intrinsics` | height/width are not whole pixels in 1..100000, focal <= 0, or views disagree |
| `bounds` | a view lacks 0 < near < far |
| `views` | fewer than 2 views (no parallax to learn from) |
| `positions` | all cameras sit at one point |
| `training_frame` | recentring/spherify is undefined (e.g. the viewing directions cancel out) |
| `images`, `images_K` | (for each image folder present) count != number of poses, an unreadable image, sizes differ, or the size does not match the poses (images_K: the size at factor K within 1 px; images/: the aspect ratio within 2 %) |
| `images_for_factor` | (when any image folder is present) the loader finds no usable images at `factor` |
| `sequence`, `upright` | (valid poses) photos named in capture order turn away and back, or a camera is upside down (nerfcli.data.pose_checks) |

The first four are the loader's own validation (`poses_bounds.find_pose_problems`); when any of them
fails, the training-frame numbers (rescale, extent, baseline, focus) are null because the
loader would refuse the file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from nerfcli.config import DataConfig
from nerfcli.data.cameras import capture_kind, view_spread_deg
from nerfcli.data.formats.llff_config import LlffConfig
from nerfcli.data.formats.llff_frame import stored_to_training_axes
from nerfcli.data.formats.llff_plan import plan_kind
from nerfcli.data.formats.llff_report import PoseReport
from nerfcli.data.formats.llff_scene import (
    find_image_files,
    holdout_split,
    list_images,
    scene_from_poses_bounds,
)
from nerfcli.data.formats.poses_bounds import PosesBounds, find_pose_problems, read_poses_array
from nerfcli.data.inspect.report import Check, ImageFolder
from nerfcli.data.plan import auto_factor
from nerfcli.data.pose_checks import check_rows
from nerfcli.errors import DataError, UsageError

ASPECT_TOL = 0.02  # the loader's tolerance between image and pose aspect ratios
POSE_CHECKS = ("finite", "rotation", "intrinsics", "bounds")


def inspect_poses(
    path: str | Path,
    factor: int = 8,
    bd_factor: float = LlffConfig.bd_factor,
    spherify: bool = LlffConfig.spherify,
    llffhold: int = 8,
    render_frames: int = 120,
    scene_type: str = "auto",
) -> PoseReport:
    """Read, check and summarise a capture (raises DataError only for the fatal cases), in
    the training frame of the scene type `nerf train` settles (auto: from the poses)."""
    if factor < 0:
        raise DataError(f"factor must be >= 1 (0: auto), got {factor}")
    path, arr = read_poses_array(path)
    num_views = arr.shape[0]
    problems = {problem.check: problem for problem in find_pose_problems(arr)}
    checks = [_pose_check(name, problems.get(name), num_views) for name in POSE_CHECKS]

    camera = _camera_fields(path, arr, factor, "intrinsics" not in problems)
    finite_bounds = arr[np.isfinite(arr).all(axis=1), 15:17]  # [M, 2]
    near_stats = _stats(finite_bounds[:, 0])
    far_stats = _stats(finite_bounds[:, 1])

    train_views, test_views = holdout_split(num_views, llffhold)
    report = PoseReport(
        path=path,
        num_views=num_views,
        **camera,
        near_min=near_stats[0],
        near_median=near_stats[1],
        near_max=near_stats[2],
        far_min=far_stats[0],
        far_median=far_stats[1],
        far_max=far_stats[2],
        llffhold=llffhold,
        test_views=test_views,
        train_views=train_views,
        bd_factor=bd_factor,
        scale=None,
        rescaled_near_min=None,
        rescaled_far_max=None,
        position_extent=None,
        mean_baseline=None,
        view_spread_deg=None,
        capture=None,
        spherify=spherify,
        render_path="circle" if spherify else "spiral",
        render_frames=render_frames,
        focus_depth=None,
        scene_type=scene_type,
        checks=checks,
    )
    report.checks.append(_views_check(num_views, train_views, test_views, llffhold))
    report.image_folders, image_checks = _image_folder_checks(path.parent, report)
    if not problems:
        pb = PosesBounds(path=path, poses=arr[:, :15].reshape(-1, 3, 5), bounds=arr[:, 15:17])
        try:
            _fill_geometry(report, pb)
        except DataError as exc:  # e.g. poses whose average direction is undefined
            report.scene = None
            report.checks.append(Check("training_frame", False, str(exc)))
        if report.image_folders:
            image_checks.append(_factor_images_check(pb, report.factor))
        if report.scene is not None:
            report.checks += [
                Check(*row) for row in check_rows(_names(pb, report), report.scene.c2w)
            ]
    report.checks.extend(image_checks)
    return report


def _names(pb: PosesBounds, report: PoseReport) -> list[str] | None:
    """The photo names of the poses, in order, for the pose checks (None without photos)."""
    try:
        return [f.name for f in find_image_files(pb.path.parent, pb, report.factor)[1]]
    except DataError:
        return None


def _camera_fields(path: Path, arr: np.ndarray, factor: int, valid: bool) -> dict:
    """PoseReport's size, focal, field of view and factor fields from view 0's hwf (None
    where the intrinsics are invalid); factor 0 is the auto factor `nerf train` picks."""
    hwf = arr[0, :15].reshape(3, 5)[:, 4]  # [3] height, width, focal of view 0
    fields: dict = dict.fromkeys(
        ("stored_height", "stored_width", "stored_focal", "fov_x_deg", "fov_y_deg"), None
    ) | dict.fromkeys(("height", "width", "focal"), None)
    if not valid:
        fields["factor"] = factor or 1
        return fields
    height, width, focal = int(round(hwf[0])), int(round(hwf[1])), float(hwf[2])
    factor = factor or auto_factor(max(height, width))
    factor_height, factor_width = int(round(height / factor)), int(round(width / factor))
    if factor_height < 1 or factor_width < 1:
        raise UsageError(
            f"--factor {factor}: shrinks the {width} x {height} (W x H) images of {path} to "
            "nothing; use a smaller --factor"
        )
    return fields | {
        "stored_height": height,
        "stored_width": width,
        "stored_focal": focal,
        "fov_x_deg": math.degrees(2.0 * math.atan(0.5 * width / focal)),
        "fov_y_deg": math.degrees(2.0 * math.atan(0.5 * height / focal)),
        "factor": factor,
        "height": factor_height,
        "width": factor_width,
        "focal": focal / factor,
    }


def _views_check(num_views: int, train: list[int], test: list[int], llffhold: int) -> Check:
    split = f"every {llffhold}th view from 0" if llffhold > 0 else "no held-out views"
    return Check(
        "views",
        num_views >= 2,
        f"{num_views} views: {len(train)} train, {len(test)} test ({split})"
        if num_views >= 2
        else f"only {num_views} view; NeRF needs several overlapping photos",
    )


def _pose_check(name: str, problem, num_views: int) -> Check:
    if problem is not None:
        return Check(name, False, problem.message)
    passed = {
        "finite": f"all {num_views} views have 17 finite values",
        "rotation": "every rotation is orthonormal with determinant +1",
        "intrinsics": "height, width and focal are valid and the same in every view",
        "bounds": "0 < near < far in every view",
    }
    return Check(name, True, passed[name])


def _stats(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    if values.size == 0:
        return None, None, None
    return float(values.min()), float(np.median(values)), float(values.max())


def _fill_geometry(report: PoseReport, pb: PosesBounds) -> None:
    """Training-frame numbers, computed exactly as the loader computes them, in the frame of
    the plan's scene type (llff_plan.plan_kind: the rule `nerf train` follows)."""
    data = DataConfig(scene_type=report.scene_type, llff={"spherify": report.spherify})
    scene = scene_from_poses_bounds(
        pb,
        factor=report.factor,
        bd_factor=report.bd_factor,
        spherify=report.spherify,
        llffhold=report.llffhold,
        render_frames=report.render_frames,
        load_imgs=False,
        scene_type=str(plan_kind(pb, data).value),
    )
    report.scene = scene
    report.scene_type, report.frame, report.render_path = scene.kind, scene.frame, scene.render_path
    report.scale = scene.source.get("bd_scale", scene.scale)
    report.rescaled_near_min = float(scene.bounds[:, 0].min())
    report.rescaled_far_max = float(scene.bounds[:, 1].max())
    report.focus_depth = scene.source.get("focus_depth")

    centres = scene.c2w[:, :3, 3].astype(np.float64)  # [N, 3]
    extent = centres.max(0) - centres.min(0)  # [3]
    report.position_extent = [float(v) for v in extent]
    if len(centres) >= 2:
        distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)  # [N, N]
        np.fill_diagonal(distances, np.inf)
        report.mean_baseline = float(distances.min(1).mean())

    stored_c2w = stored_to_training_axes(pb.poses)  # [N, 3, 4] before rescale and recentring
    report.view_spread_deg = view_spread_deg(stored_c2w)
    report.capture = capture_kind(stored_c2w)

    stored_extent = float(np.ptp(pb.poses[:, :, 3], axis=0).max())
    coincide = stored_extent <= 1e-9 * (1.0 + float(np.abs(pb.poses[:, :, 3]).max()))
    report.checks.append(
        Check(
            "positions",
            not coincide,
            "all cameras are at the same point; there is no parallax to learn depth from"
            if coincide
            else "cameras are spread out (see extent and baseline)",
        )
    )


_FACTOR_FOLDER = re.compile(r"^images_(\d+)$")


def _image_folder_checks(root: Path, report: PoseReport) -> tuple[list[ImageFolder], list[Check]]:
    """One check per image folder beside the poses: count, readability, one size, size."""
    folders: list[tuple[Path, int | None]] = []
    if (root / "images").is_dir():
        folders.append((root / "images", None))
    try:
        children = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError:
        children = []
    for child in children:
        match = _FACTOR_FOLDER.match(child.name)
        if match and child.is_dir() and int(match.group(1)) >= 1:
            folders.append((child, int(match.group(1))))
    infos, checks = [], []
    for folder, factor in folders:
        try:
            info, check = _check_image_folder(folder, factor, report)
        except OSError as exc:
            info = ImageFolder(folder.name, factor, 0, None, None)
            check = Check(folder.name, False, f"{folder}: cannot list ({exc.strerror or exc})")
        infos.append(info)
        checks.append(check)
    return infos, checks


def _check_image_folder(
    folder: Path, factor: int | None, report: PoseReport
) -> tuple[ImageFolder, Check]:
    files = list_images(folder)
    sizes: list[tuple[int, int]] = []
    unreadable: list[tuple[Path, str]] = []
    for file in files:
        try:
            sizes.append(_verified_size(file))
        except DataError as exc:
            unreadable.append((file, str(exc)))
    info = ImageFolder(
        folder=folder.name,
        factor=factor,
        count=len(files),
        height=sizes[0][0] if sizes else None,
        width=sizes[0][1] if sizes else None,
    )
    n = report.num_views
    name = folder.name
    poses_name = report.path.name
    if not files:
        return info, Check(name, False, f"{folder}: no .png/.jpg images; it should hold {n}")
    if len(files) != n:
        hint = (
            "remove the images COLMAP did not register (`nerf colmap2poses --prune-images`)"
            if len(files) > n
            else "some photos are missing"
        )
        return info, Check(
            name, False, f"{folder}: {len(files)} images but {poses_name} has {n} poses; {hint}"
        )
    if unreadable:
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        return info, Check(name, False, unreadable[0][1] + more)
    if len(set(sizes)) > 1:
        odd = next(i for i, size in enumerate(sizes) if size != sizes[0])
        return info, Check(
            name,
            False,
            f"{files[odd]}: size {sizes[odd][0]} x {sizes[odd][1]} differs from "
            f"{files[0].name} ({sizes[0][0]} x {sizes[0][1]}); all views must share one size",
        )
    got_h, got_w = sizes[0]
    if report.stored_height is None or report.stored_width is None:
        return info, Check(name, True, f"{n} images of {got_h} x {got_w} (H x W)")
    if factor is not None:
        want_h, want_w = (
            int(round(report.stored_height / factor)),
            int(round(report.stored_width / factor)),
        )
        if abs(got_h - want_h) > 1 or abs(got_w - want_w) > 1:
            return info, Check(
                name,
                False,
                f"{folder}: images are {got_h} x {got_w} but {poses_name} at factor {factor} "
                f"means {want_h} x {want_w}; the loader will ignore this folder; delete it or "
                "regenerate it from images/",
            )
        return info, Check(name, True, f"{n} images of {got_h} x {got_w} (H x W), as the poses say")
    aspect_img, aspect_pose = got_w / got_h, report.stored_width / report.stored_height
    if abs(aspect_img - aspect_pose) / aspect_pose > ASPECT_TOL:
        return info, Check(
            name,
            False,
            f"{folder}: images are {got_h} x {got_w} (aspect {aspect_img:.3f}) but "
            f"{poses_name} says {report.stored_height} x {report.stored_width} (aspect {aspect_pose:.3f}); "
            "images and poses do not belong together",
        )
    same = (got_h, got_w) == (report.stored_height, report.stored_width)
    return info, Check(
        name,
        True,
        f"{n} images of {got_h} x {got_w} (H x W)"
        + (
            ", as the poses say"
            if same
            else f" (poses say {report.stored_height} x {report.stored_width})"
        ),
    )


def _verified_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image whose file structure is intact, else a DataError."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            image.verify()
        return height, width
    except Exception as exc:  # PIL raises many types for damaged files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read image ({reason}); replace or remove it") from None


def _factor_images_check(pb: PosesBounds, factor: int) -> Check:
    """Which folder training at `factor` would read, exactly as the loader decides."""
    try:
        folder, files, needs_resize = find_image_files(pb.path.parent, pb, factor)
    except DataError as exc:
        return Check("images_for_factor", False, str(exc))
    if needs_resize:
        message = f"factor {factor}: training resizes the {len(files)} images of {folder.name}/"
    else:
        message = f"factor {factor}: training reads the {len(files)} images of {folder.name}/"
    return Check("images_for_factor", True, message)
