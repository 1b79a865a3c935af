"""Walk-around LLFF captures with known geometry for the scene-type, normalisation and per-view
camera tests: cameras on a circle around a known point, looking at it, with poses_bounds.npy
written as LLFF's imgs2poses would (rows in image-name order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import look_at_stored


def surround_poses(
    n: int = 12, centre=(1.0, 2.0, 3.0), radius: float = 3.0, height: float = 1.0
) -> np.ndarray:
    """[N, 3, 4] stored [down, right, back, centre] poses on a circle of `radius` about the
    vertical through `centre` (y up), `height` above it, all looking at `centre`."""
    centre = np.asarray(centre, dtype=np.float64)
    poses = []
    for k in range(n):
        angle = 2.0 * np.pi * k / n
        position = centre + np.array([radius * np.cos(angle), height, radius * np.sin(angle)])
        poses.append(look_at_stored(position, centre))
    return np.stack(poses, 0)


def write_surround_llff(
    root: Path,
    n: int = 12,
    centre=(1.0, 2.0, 3.0),
    radius: float = 3.0,
    size: tuple[int, int] = (24, 32),
    focal: float = 30.0,
    names: list[str] | None = None,
    bounds: tuple[float, float] = (1.5, 9.0),
) -> Path:
    """A surround LLFF capture on disk (images/ with random PNGs named `names` in file order,
    poses_bounds.npy rows in sorted-name order, as imgs2poses writes them)."""
    import imageio.v3 as iio

    root.mkdir(parents=True, exist_ok=True)
    names = names or [f"img{k:03d}.png" for k in range(n)]
    poses = surround_poses(len(names), centre, radius)
    order = sorted(range(len(names)), key=lambda k: names[k])
    hwf = np.array([[size[0]], [size[1]], [focal]])
    rows = [
        np.concatenate([np.concatenate([poses[k], hwf], 1).ravel(), list(bounds)]) for k in order
    ]
    np.save(root / "poses_bounds.npy", np.array(rows))
    folder = root / "images"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        iio.imwrite(folder / name, rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return root
