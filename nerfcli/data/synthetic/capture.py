"""The hand-held cameras of the generated capture and rendering one view of them."""

from __future__ import annotations

import numpy as np

from nerfcli.data.synthetic.raycast import SceneSpec
from nerfcli.data.synthetic.shapes import _unit
from nerfcli.data.synthetic.still_life import BACKDROP_DEPTH, _axis_angle

LLFFHOLD = 8  # the loader's default hold-out: views 0, 8, 16, ... are test views
CHUNK_RAYS = 16384  # rays cast at once (measured fastest: temporaries stay in cache)


def grid_shape(num_views: int) -> tuple[int, int]:
    """(rows, columns) of the capture grid: 16 -> 4 x 4, 20 -> 4 x 5, 25 -> 5 x 5."""
    rows = max(1, int(np.floor(np.sqrt(num_views))))
    return rows, int(np.ceil(num_views / rows))


def view_order(num_views: int, rows: int, columns: int) -> list[tuple[int, int]]:
    """Grid cell (row, column) of each view, in file order.

    The held-out views (0, 8, 16, ... with the default llffhold) are put on interior cells
    spread over the grid, so evaluation interpolates between training views instead of
    extrapolating past the edge of the capture (whose borders no other view sees).
    """
    cells = [(r, c) for r in range(rows) for c in range(columns)][:num_views]
    test_slots = list(range(0, num_views, LLFFHOLD))
    interior = [(r, c) for r, c in cells if 0 < r < rows - 1 and 0 < c < columns - 1]
    if len(interior) < len(test_slots):
        return cells
    picks = np.round(np.linspace(0, len(interior) - 1, len(test_slots))).astype(int)
    test_cells = [interior[k] for k in picks]
    rest = iter([cell for cell in cells if cell not in test_cells])
    test_iter = iter(test_cells)
    return [next(test_iter) if k in test_slots else next(rest) for k in range(num_views)]


def make_cameras(
    num_views: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Camera-to-world poses [N, 3, 4] ([right, up, back] columns) and their grid cells.

    Positions: a grid 1.2 wide and 0.8 tall in the plane z = 0, jittered by a few hundredths;
    each camera looks at a point on the backdrop near (0, 0, -6) (a mild toe-in, as a hand-held
    capture pointing at its subject) and is then turned by a random rotation of about one degree.
    """
    rows, columns = grid_shape(num_views)
    xs = np.linspace(-0.6, 0.6, columns) if columns > 1 else np.zeros(1)
    ys = np.linspace(0.4, -0.4, rows) if rows > 1 else np.zeros(1)
    cells = view_order(num_views, rows, columns)
    poses = []
    for row, column in cells:
        position = np.array([xs[column], ys[row], 0.0]) + rng.normal(0.0, [0.03, 0.03, 0.04])
        target = np.array([0.0, -0.2, -BACKDROP_DEPTH]) + rng.normal(0.0, 0.15, 3)
        back = _unit(position - target)
        right = _unit(np.cross([0.0, 1.0, 0.0], back))
        up = np.cross(back, right)
        rotation = np.stack([right, up, back], 1) @ _axis_angle(rng.normal(0.0, 0.015, 3))
        poses.append(np.concatenate([rotation, position[:, None]], 1))
    return np.stack(poses, 0), cells


def training_to_stored_axes(c2w: np.ndarray) -> np.ndarray:
    """[N, 3, 4] columns [right, up, back, t] -> stored LLFF [down, right, back, t]."""
    return np.concatenate([-c2w[:, :, 1:2], c2w[:, :, 0:1], c2w[:, :, 2:4]], 2)


# ----------------------------------------------------------------------------- rendering


def pixel_rays(
    c2w: np.ndarray, height: int, width: int, focal: float, offsets: tuple[float, float] = (0, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """World rays (origins, directions) [H*W, 3] through pixel (i + dx, j + dy), nerfcli.data.rays
    convention: camera direction [(i - W/2) / f, -(j - H/2) / f, -1], c2w [3, 4] [right, up, back]."""
    cols, rows = np.meshgrid(
        np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
    )
    dirs = np.stack(
        [
            (cols.ravel() + offsets[0] - 0.5 * width) / focal,
            -(rows.ravel() + offsets[1] - 0.5 * height) / focal,
            -np.ones(height * width),
        ],
        -1,
    )  # [H*W, 3]
    directions = dirs @ c2w[:3, :3].T
    origins = np.broadcast_to(c2w[:3, 3], directions.shape)
    return origins, directions


def render_view(
    spec: SceneSpec, c2w: np.ndarray, height: int, width: int, focal: float, supersample: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb [H, W, 3] float in [0, 1], z-depth [H, W] of the pixel-centre rays) of one camera."""
    steps = (np.arange(supersample) + 0.5) / supersample - 0.5  # sub-pixel offsets
    offsets = [(dx, dy) for dy in steps for dx in steps]
    averaged = len(offsets)
    if (0.0, 0.0) not in offsets:
        offsets.append((0.0, 0.0))  # even supersampling: the centre ray only carries the depth
    rays = [pixel_rays(c2w, height, width, focal, offset) for offset in offsets]
    origins = np.concatenate([o for o, _ in rays])  # [K*H*W, 3]
    directions = np.concatenate([d for _, d in rays])
    t = np.empty(origins.shape[0])  # [K*H*W]
    rgb = np.empty(origins.shape)  # [K*H*W, 3]
    for start in range(0, origins.shape[0], CHUNK_RAYS):  # chunks keep temporaries in cache
        chunk = slice(start, start + CHUNK_RAYS)
        hits = spec.cast(origins[chunk], directions[chunk])
        t[chunk], rgb[chunk] = hits.t, hits.rgb
    pixels = height * width
    center = offsets.index((0.0, 0.0))
    depth = t[center * pixels : (center + 1) * pixels]  # camera z of the directions is -1
    color = rgb[: averaged * pixels].reshape(averaged, height, width, 3).mean(0)
    return color, depth.reshape(height, width)
