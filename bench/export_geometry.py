"""How right is the exported geometry? Two checks, each reading the capture's own files only
(no nerfcli loader), so a wrong frame transform in `nerf export` cannot cancel out:

    python -m bench.export_geometry synth SCENE MESH.ply [POINTS.ply]
        Chamfer distance of the mesh's vertices and of the point cloud to the generated
        scene's known surfaces: every pixel's ground-truth depth (depth/*.npy) back-projected
        with poses_bounds.npy into the capture's world. Reported in scene units and as a
        fraction of the scene's extent (the diagonal of the known surface points' box).
        Only geometry seen by a training view counts on the export's side (the part of the
        mesh no camera sees is not constrained by the photos): vertices that project into at
        least one view, in front of it.
    python -m bench.export_geometry lego SCENE MESH.ply
        The fraction of the mesh's vertices that project inside the alpha masks (alpha > 0) of
        the 100 training views, with transforms_train.json's poses and camera_angle_x.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from scipy.spatial import cKDTree

from nerfcli.export.ply import read_ply

LLFFHOLD = 8


def synth_surface(scene: Path) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Known surface points [P, 3] (capture world) and the cameras (c2w [3, 4] OpenGL, hwf)."""
    poses_bounds = np.load(scene / "poses_bounds.npy")
    poses = poses_bounds[:, :15].reshape(-1, 3, 5)
    files = sorted((scene / "depth").glob("*.npy"))
    points, cameras = [], []
    for pose, path in zip(poses, files):
        depth = np.load(path)  # [H, W] z-depth
        height, width, focal = pose[:, 4]
        down, right, back, centre = pose[:, 0], pose[:, 1], pose[:, 2], pose[:, 3]
        c2w = np.stack([right, -down, back, centre], 1)  # OpenGL [right, up, back]
        cameras.append((c2w, np.array([height, width, focal])))
        cols, rows = np.meshgrid(np.arange(depth.shape[1]), np.arange(depth.shape[0]))
        x = (cols - width / 2) / focal * depth
        y = -(rows - height / 2) / focal * depth
        camera = np.stack([x, y, -depth], -1).reshape(-1, 3)
        valid = np.isfinite(camera).all(-1)
        points.append(camera[valid] @ c2w[:, :3].T + c2w[:, 3])
    return np.concatenate(points), cameras


def seen(points: np.ndarray, cameras, train_only: bool = True) -> np.ndarray:
    """[P] bool: in front of and inside the image of at least one (training) camera."""
    hit = np.zeros(len(points), bool)
    for view, (c2w, (height, width, focal)) in enumerate(cameras):
        if train_only and view % LLFFHOLD == 0:
            continue
        local = (points - c2w[:, 3]) @ c2w[:, :3]  # camera frame
        z = -local[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            col = local[:, 0] / z * focal + width / 2
            row = -local[:, 1] / z * focal + height / 2
        hit |= (z > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    return hit


def chamfer(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean nearest distances a->b, b->a and their mean (the Chamfer distance)."""
    ab = cKDTree(b).query(a)[0]
    ba = cKDTree(a).query(b)[0]
    return {
        "to_truth_mean": float(ab.mean()),
        "to_truth_median": float(np.median(ab)),
        "from_truth_mean": float(ba.mean()),
        "chamfer": float(0.5 * (ab.mean() + ba.mean())),
    }


def synth(scene: Path, exports: list[Path]) -> dict:
    truth, cameras = synth_surface(scene)
    rng = np.random.default_rng(0)
    if len(truth) > 200_000:
        truth = truth[rng.choice(len(truth), 200_000, replace=False)]
    extent = float(np.linalg.norm(truth.max(0) - truth.min(0)))
    out = {"scene": str(scene), "extent": extent, "truth_points": len(truth)}
    for path in exports:
        ply = read_ply(path)
        points = ply.vertices.astype(np.float64)
        visible = seen(points, cameras)
        if visible.sum() > 200_000:
            points = points[visible][rng.choice(int(visible.sum()), 200_000, replace=False)]
        else:
            points = points[visible]
        result = chamfer(points, truth)
        result["chamfer_over_extent"] = result["chamfer"] / extent
        result["points_seen"] = int(visible.sum())
        result["points_total"] = len(ply.vertices)
        result["comments"] = ply.comments
        out[path.name] = result
    return out


def lego(scene: Path, mesh: Path) -> dict:
    meta = json.loads((scene / "transforms_train.json").read_text())
    vertices = read_ply(mesh).vertices.astype(np.float64)
    inside_all = np.ones(len(vertices), bool)
    pairs_inside, pairs = 0, 0
    for frame in meta["frames"]:
        image = iio.imread(scene / (frame["file_path"].removeprefix("./") + ".png"))
        alpha = image[..., 3] > 0  # [H, W]
        height, width = alpha.shape
        focal = 0.5 * width / np.tan(0.5 * float(meta["camera_angle_x"]))
        c2w = np.asarray(frame["transform_matrix"], np.float64)[:3]
        local = (vertices - c2w[:, 3]) @ c2w[:, :3]
        z = -local[:, 2]
        col = np.floor(local[:, 0] / z * focal + 0.5 * width).astype(np.int64)
        row = np.floor(-local[:, 1] / z * focal + 0.5 * height).astype(np.int64)
        in_image = (z > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
        inside = np.zeros(len(vertices), bool)
        inside[in_image] = alpha[row[in_image], col[in_image]]
        inside_all &= inside
        pairs_inside += int(inside.sum())
        pairs += len(vertices)
    return {
        "scene": str(scene),
        "mesh": str(mesh),
        "vertices": len(vertices),
        "views": len(meta["frames"]),
        "inside_every_mask": float(inside_all.mean()),
        "vertex_view_pairs_inside": pairs_inside / pairs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=("synth", "lego"))
    parser.add_argument("scene", type=Path)
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if not args.scene.is_dir():
        print(f"skip: {args.scene} not found")
        return 0
    result = (
        synth(args.scene, args.files) if args.check == "synth" else lego(args.scene, args.files[0])
    )
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
