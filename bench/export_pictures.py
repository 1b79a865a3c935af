"""Pictures of exported PLY files (matplotlib, Agg), to look at what `nerf export` wrote:

    python -m bench.export_pictures OUT.png FILE.ply [FILE.ply ...] [--elev 20 --azim -60]
        [--max-faces 60000] [--max-points 60000] [--title TEXT] [--keep 1.0]

Triangles are drawn with their vertices' mean colour (a random subset past --max-faces),
points with theirs, edges (camera frustums) as lines; all files in one 3-D axes, equal scale,
two views side by side (--azim and --azim + 90). --keep Q < 1 draws only the fraction Q of
the points nearest their median point (an unbounded scene's cloud runs out to its contracted
background; the object is in the middle)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection  # noqa: E402

from nerfcli.export.ply import read_ply  # noqa: E402


def _draw(axes, ply, rng, max_faces: int, max_points: int) -> np.ndarray:
    vertices = ply.vertices
    colours = ply.colours / 255.0 if ply.colours is not None else np.full((len(vertices), 3), 0.5)
    if ply.faces is not None and len(ply.faces):
        faces = ply.faces
        if len(faces) > max_faces:
            faces = faces[rng.choice(len(faces), max_faces, replace=False)]
        polygons = Poly3DCollection(vertices[faces], linewidths=0)
        polygons.set_facecolor(colours[faces].mean(1))
        axes.add_collection3d(polygons)
        return vertices[np.unique(faces)]
    if ply.edges is not None and len(ply.edges):
        lines = Line3DCollection(
            vertices[ply.edges], colors=colours[ply.edges[:, 0]], linewidths=0.6
        )
        axes.add_collection3d(lines)
        return vertices
    pick = np.arange(len(vertices))
    if len(pick) > max_points:
        pick = rng.choice(len(vertices), max_points, replace=False)
    axes.scatter(*vertices[pick].T, c=colours[pick], s=0.3, depthshade=False, linewidths=0)
    return vertices[pick]


def _nearest(ply, keep: float):
    """The point cloud's fraction `keep` of points nearest its median point (meshes as they are)."""
    if ply.faces is not None and len(ply.faces):
        return ply
    distance = np.linalg.norm(ply.vertices - np.median(ply.vertices, 0), axis=-1)
    chosen = distance <= np.quantile(distance, keep)
    colours = ply.colours[chosen] if ply.colours is not None else None
    return replace(ply, vertices=ply.vertices[chosen], colours=colours, normals=None)


def picture(
    out: Path,
    files: list[Path],
    elev: float,
    azim: float,
    max_faces: int,
    max_points: int,
    title: str,
    keep: float = 1.0,
) -> None:
    rng = np.random.default_rng(0)
    figure = plt.figure(figsize=(10, 5), dpi=72)
    plies = [read_ply(path) for path in files]
    if keep < 1.0:
        plies = [_nearest(ply, keep) for ply in plies]
    for column, angle in enumerate((azim, azim + 90)):
        axes = figure.add_subplot(1, 2, column + 1, projection="3d")
        shown = np.concatenate([_draw(axes, ply, rng, max_faces, max_points) for ply in plies])
        lo, hi = np.percentile(shown, 0.5, 0), np.percentile(shown, 99.5, 0)
        centre, half = (lo + hi) / 2, float((hi - lo).max()) / 2
        for setter, c in zip((axes.set_xlim, axes.set_ylim, axes.set_zlim), centre):
            setter(c - half, c + half)
        axes.set_box_aspect((1, 1, 1))
        axes.view_init(elev=elev, azim=angle)
        axes.set_title(f"azimuth {angle:g}", fontsize=9)
        axes.tick_params(labelsize=6)
    figure.suptitle(title or ", ".join(p.name for p in files), fontsize=10)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--elev", type=float, default=20.0)
    parser.add_argument("--azim", type=float, default=-60.0)
    parser.add_argument("--max-faces", type=int, default=60000)
    parser.add_argument("--max-points", type=int, default=60000)
    parser.add_argument("--title", default="")
    parser.add_argument("--keep", type=float, default=1.0)
    args = parser.parse_args(argv)
    picture(
        args.out,
        args.files,
        args.elev,
        args.azim,
        args.max_faces,
        args.max_points,
        args.title,
        args.keep,
    )
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
