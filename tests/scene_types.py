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


def write_colmap_surround(
    root: Path,
    names: list[str],
    focals: list[float],
    model: str = "SIMPLE_PINHOLE",
    extra: tuple[float, ...] = (),
    size: tuple[int, int] = (24, 32),
    centre=(1.0, 2.0, 3.0),
    radius: float = 3.0,
) -> Path:
    """A surround capture with its COLMAP model: images/ named `names`, sparse/0 with one
    camera per image (camera k+1: focal focals[k], principal point at the centre, then the
    `extra` parameters of `model`), and poses_bounds.npy converted from that model by
    colmap_to_poses_bounds (rows in sorted-name order, as LLFF's imgs2poses)."""
    import imageio.v3 as iio

    from nerfcli.data.formats.colmap import colmap_to_poses_bounds, save_poses_bounds
    from nerfcli.data.formats.colmap_io import write_model
    from nerfcli.data.formats.colmap_model import Camera, ColmapModel, Points3D
    from tests.colmap_scenes import make_image

    height, width = size
    stored = surround_poses(len(names), centre, radius)  # [N, 3, 4] in `names` order
    rng = np.random.default_rng(0)
    points = np.asarray(centre) + rng.uniform(-0.5, 0.5, (30, 3))  # [M, 3]
    cameras, images = [], []
    for k, name in enumerate(names):
        params = [focals[k]] if model.startswith("SIMPLE") or model == "RADIAL" else [focals[k]] * 2
        params = np.array([*params, width / 2, height / 2, *extra], dtype=np.float64)
        cameras.append(Camera(k + 1, model, width, height, params))
        axes = np.stack([stored[k, :, 1], stored[k, :, 0], -stored[k, :, 2]], 1)  # [r, d, f]
        image = make_image(k + 1, name, axes, stored[k, :, 3], camera_id=k + 1)
        image.xys = np.full((len(points), 2), 1.0)
        image.point3d_ids = np.arange(len(points), dtype=np.int64)
        images.append(image)
    n = len(names)
    colmap = ColmapModel(
        path=root / "sparse" / "0",
        format="bin",
        cameras=cameras,
        images=images,
        points=Points3D(
            ids=np.arange(len(points), dtype=np.uint64),
            xyz=points,
            rgb=np.zeros((len(points), 3), dtype=np.uint8),
            error=np.full(len(points), 0.5),
            track_lengths=np.full(len(points), n, dtype=np.int64),
            track_image_ids=np.tile(np.arange(1, n + 1, dtype=np.uint32), len(points)),
            track_point2d_idxs=np.repeat(np.arange(len(points), dtype=np.uint32), n),
        ),
    )
    write_model(colmap, root / "sparse" / "0", "bin")
    save_poses_bounds(root / "poses_bounds.npy", colmap_to_poses_bounds(colmap).poses_bounds)
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        iio.imwrite(folder / name, rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return root
