"""LLFF's poses_bounds.npy: N rows of 17 floats, a 3x5 matrix [R | t | hwf] whose rotation
columns are [down, right, back] and the view's near and far depth bounds. Read defensively
(the header first, so a corrupt one never makes numpy allocate more than the file holds) and
validated view by view, every problem named with its views and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfcli.errors import DataError

ORTHONORMAL_TOL = 1e-3  # max |R^T R - I| of a stored rotation
MAX_IMAGE_SIDE = 100_000  # pixels; larger stored sizes are corrupt values, not cameras


@dataclass
class PosesBounds:
    """The raw contents of poses_bounds.npy, validated, in the stored convention."""

    path: Path
    poses: np.ndarray  # [N, 3, 5] float64, rotation columns [down, right, back], last column hwf
    bounds: np.ndarray  # [N, 2] near, far

    @property
    def num_views(self) -> int:
        return self.poses.shape[0]

    @property
    def height(self) -> int:
        return int(round(self.poses[0, 0, 4]))

    @property
    def width(self) -> int:
        return int(round(self.poses[0, 1, 4]))

    @property
    def focal(self) -> float:
        return float(self.poses[0, 2, 4])


def resolve_poses_path(path: str | Path) -> Path:
    """Accept a poses_bounds.npy file or the scene folder holding it."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "poses_bounds.npy"
        if not candidate.is_file():
            raise DataError(
                f"{path}: no poses_bounds.npy in this folder; run `nerf colmap2poses` on its "
                "COLMAP model or point at the file"
            )
        return candidate
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return path


def read_poses_array(path: str | Path) -> tuple[Path, np.ndarray]:
    """Read poses_bounds.npy as a float64 [N, 17] array, checking only that it parses.

    This is the fatal level: a file that is not a numeric .npy array of N x 17 values (N >= 1)
    raises DataError. The header is read first, so a corrupt header can never make numpy
    allocate more than the file holds. Content problems are left to `find_pose_problems`.
    """
    path = resolve_poses_path(path)
    fix = "regenerate it with `nerf colmap2poses` or LLFF's imgs2poses"
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as handle:
            try:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
                else:
                    shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
            except Exception:  # numpy raises ValueError/EOFError/SyntaxError for bad headers
                raise DataError(
                    f"{path}: not a NumPy .npy file (bad or missing header); {fix}"
                ) from None
            data_offset = handle.tell()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if dtype.kind not in "fiu" or dtype.fields is not None or dtype.subdtype is not None:
        raise DataError(f"{path}: expected a numeric N x 17 array, got dtype {dtype}; {fix}")
    if len(shape) != 2 or shape[1] != 17 or shape[0] < 1:
        shown = "x".join(map(str, shape)) or "scalar"
        raise DataError(
            f"{path}: expected an N x 17 array (3x5 pose + near, far per view), got shape "
            f"{shown}; this is not an LLFF poses_bounds.npy"
        )
    needed = shape[0] * shape[1] * dtype.itemsize
    if file_size - data_offset < needed:
        raise DataError(
            f"{path}: truncated: the header promises {shape[0]} x 17 values "
            f"({needed} bytes) but only {max(file_size - data_offset, 0)} bytes follow; {fix}"
        )
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # anything numpy raises here means the file is unusable
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable .npy array ({reason}); {fix}") from None
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(shape):
        raise DataError(f"{path}: not a readable .npy array; {fix}")
    with np.errstate(over="ignore", invalid="ignore"):
        return path, arr.astype(np.float64)


@dataclass
class PoseProblem:
    """One kind of content problem in poses_bounds.npy, with every view that has it."""

    check: str  # "finite", "rotation", "intrinsics" or "bounds"
    views: list[int]  # views (rows) with the problem; empty when it concerns the whole file
    message: str  # one line: the first offending view with its numbers, and the fix


def _views_text(views: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in views[:limit])
    more = f" and {len(views) - limit} more" if len(views) > limit else ""
    return f"view{'s' if len(views) > 1 else ''} {shown}{more}"


def find_pose_problems(arr: np.ndarray) -> list[PoseProblem]:
    """Every content problem of a parsed [N, 17] array, in check order (empty when valid).

    Checks: finite values; rotations orthonormal with determinant +1 (a proper rotation, not a
    mirror); hwf (column 5) positive, whole-pixel height and width, the same in every view;
    0 < near < far. Views with non-finite values are reported once, under "finite".
    """
    problems: list[PoseProblem] = []
    finite_rows = np.isfinite(arr).all(axis=1)  # [N]
    bad = [int(v) for v in np.where(~finite_rows)[0]]
    if bad:
        problems.append(
            PoseProblem(
                "finite",
                bad,
                f"{_views_text(bad)} {'have' if len(bad) > 1 else 'has'} non-finite values "
                "(NaN or inf); re-run pose estimation for that image or remove its row",
            )
        )
    poses = arr[:, :15].reshape(-1, 3, 5)  # [N, 3, 5]
    rot = poses[:, :, :3]  # [N, 3, 3]
    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(np.einsum("nji,njk->nik", rot, rot) - np.eye(3)).max(axis=(1, 2))  # [N]
        det = np.linalg.det(np.where(finite_rows[:, None, None], rot, np.eye(3)))  # [N]
    # `not (err <= tol)` also catches NaN from overflowing products.
    bad_rot = finite_rows & ~((err <= ORTHONORMAL_TOL) & (det > 0))
    bad = [int(v) for v in np.where(bad_rot)[0]]
    if bad:
        first = bad[0]
        if err[first] <= ORTHONORMAL_TOL:
            what = "is a mirror image (determinant -1), not a rotation"
        else:
            what = f"is not orthonormal (max |R^T R - I| = {err[first]:.3g} > {ORTHONORMAL_TOL})"
        problems.append(
            PoseProblem(
                "rotation",
                bad,
                f"{_views_text(bad)}: the rotation of view {first} {what}; the file is corrupt or "
                "not in LLFF layout",
            )
        )
    message = _hwf_problem(poses, finite_rows)
    if message:
        problems.append(PoseProblem("intrinsics", [], message))
    bounds = arr[:, 15:17]  # [N, 2]
    bad_bounds = finite_rows & ~((bounds[:, 0] > 0) & (bounds[:, 0] < bounds[:, 1]))
    bad = [int(v) for v in np.where(bad_bounds)[0]]
    if bad:
        near, far = bounds[bad[0]]
        problems.append(
            PoseProblem(
                "bounds",
                bad,
                f"{_views_text(bad)}: view {bad[0]} has invalid bounds near={near:g}, "
                f"far={far:g} (need 0 < near < far); recompute them from the sparse points",
            )
        )
    return problems


def _hwf_problem(poses: np.ndarray, finite_rows: np.ndarray) -> str | None:
    """Why column 5 (height, width, focal) is unusable, or None when it is fine."""
    if not finite_rows[0]:
        return "height, width and focal (column 5) are unknown: view 0 is not finite"
    height, width, focal = poses[0, :, 4]
    for name, value in (("height", height), ("width", width)):
        if not 1 <= round(value) <= MAX_IMAGE_SIDE or abs(value - round(value)) > 0.01:
            return (
                f"stored image {name} {value:g} is not a whole number of pixels in "
                f"1..{MAX_IMAGE_SIDE}; column 5 must hold height, width, focal"
            )
    # positive in float32 too: the Scene stores float32, where 1e-300 is 0
    if not (focal > 0 and np.float32(focal) > 0 and np.isfinite(np.float32(focal))):
        return (
            f"stored focal length {focal:g} must be a positive float32 number; column 5 must "
            "hold h, w, focal"
        )
    hwf = poses[finite_rows, :, 4]  # [M, 3]
    same = (np.abs(hwf - hwf[0]) <= 1e-4 * np.abs(hwf[0])).all(axis=1)  # [M]
    if not same.all():
        view = int(np.where(finite_rows)[0][np.where(~same)[0][0]])
        h, w, f = poses[view, :, 4]
        return (
            f"view {view} has height, width, focal {h:g}, {w:g}, {f:g} but view 0 has "
            f"{height:g}, {width:g}, {focal:g}; LLFF assumes one camera for all views"
        )
    return None


def read_poses_bounds(path: str | Path) -> PosesBounds:
    """Load and validate poses_bounds.npy (shape, finiteness, rotations, bounds, hwf)."""
    path, arr = read_poses_array(path)
    problems = find_pose_problems(arr)
    if problems:
        raise DataError(f"{path}: {problems[0].message}")
    poses = arr[:, :15].reshape(-1, 3, 5)
    bounds = arr[:, 15:17].copy()
    return PosesBounds(path=path, poses=poses, bounds=bounds)
