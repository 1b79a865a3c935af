"""Pictures of cameras: positions, viewing directions and the render path, top and side views.

matplotlib's object API with the Agg canvas, so nothing touches the global backend or needs a
display. Poses are in the training frame: x right, y up, z back (cameras look along -z).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (horizontal axis, vertical axis, title) of each panel; indices into x, y, z. The training
# frame of forward-facing captures has y up; spherified captures have z up (away from the object).
PANELS = {
    1: ((0, 2, "top view (looking down -y)"), (2, 1, "side view (looking along -x)")),
    2: ((0, 1, "top view (looking down -z)"), (0, 2, "side view (looking along +y)")),
}
AXIS_NAMES = {1: ("x (right)", "y (up)", "z (back)"), 2: ("x", "y", "z (up)")}


def plot_cameras(
    out_path: str | Path,
    c2w: np.ndarray,
    render_poses: np.ndarray | None = None,
    test_views: list[int] | None = None,
    title: str = "",
    up_axis: int = 1,
    dpi: int = 110,
) -> None:
    """Write a PNG of cameras c2w [N, 3, 4] and (optionally) a render path [F, 3, 4].

    up_axis: 1 when y is up (forward-facing training frame), 2 when z is (spherified).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c2w = np.asarray(c2w, dtype=np.float64)
    centres = c2w[:, :3, 3]  # [N, 3]
    forward = -c2w[:, :3, 2]  # [N, 3] viewing directions
    test = np.zeros(len(c2w), dtype=bool)
    if test_views:
        test[np.asarray(test_views, dtype=int)] = True

    points = centres
    if render_poses is not None and len(render_poses):
        path_centres = np.asarray(render_poses, dtype=np.float64)[:, :3, 3]  # [F, 3]
        points = np.concatenate([centres, path_centres], 0)
    span = float(np.ptp(points, axis=0).max()) if len(points) > 1 else 1.0
    arrow = 0.15 * span if span > 0 else 1.0  # length of the viewing-direction arrows

    figure = Figure(figsize=(12, 5.6), layout="constrained")
    FigureCanvasAgg(figure)
    path_centres = points[len(centres) :]  # [F, 3], empty without a render path
    for index, (h_axis, v_axis, panel_title) in enumerate(PANELS[up_axis]):
        axes = figure.add_subplot(1, 2, index + 1)
        axis = (h_axis, v_axis)
        if len(path_centres):
            _draw_path(axes, path_centres, axis)
        _draw_cameras(axes, centres, forward * arrow, test, axis)
        axes.set_xlabel(AXIS_NAMES[up_axis][h_axis])
        axes.set_ylabel(AXIS_NAMES[up_axis][v_axis])
        axes.set_title(panel_title, fontsize=10)
        axes.set_aspect("equal", adjustable="datalim")
        axes.grid(True, linewidth=0.4, alpha=0.5)
        if index == 0:
            axes.legend(loc="best", fontsize=8)
    figure.suptitle(
        (title + "\n" if title else "") + "arrows: viewing direction (-z of each camera)",
        fontsize=10,
    )
    figure.savefig(out_path, format="png", dpi=dpi)


def _draw_path(axes, path_centres: np.ndarray, axis: tuple[int, int]) -> None:
    """The render path [F, 3] as a line, its first frame as a dot."""
    h, v = axis
    axes.plot(
        path_centres[:, h],
        path_centres[:, v],
        color="tab:green",
        linewidth=1.2,
        alpha=0.8,
        label=f"render path ({len(path_centres)} frames)",
        zorder=1,
    )
    axes.plot(
        path_centres[0, h],
        path_centres[0, v],
        marker="o",
        markersize=5,
        color="tab:green",
        linestyle="none",
        zorder=1,
    )


def _draw_cameras(axes, centres, arrows, test, axis: tuple[int, int]) -> None:
    """Camera centres [N, 3] with viewing-direction arrows [N, 3]; test views in orange."""
    h, v = axis
    for mask, colour, label in (
        (~test, "tab:blue", f"training (and val) views ({int((~test).sum())})"),
        (test, "tab:orange", f"test views ({int(test.sum())})"),
    ):
        if not mask.any():
            continue
        axes.quiver(
            centres[mask, h],
            centres[mask, v],
            arrows[mask, h],
            arrows[mask, v],
            angles="xy",
            scale_units="xy",
            scale=1.0,
            color=colour,
            width=0.004,
            alpha=0.7,
            zorder=2,
        )
        axes.scatter(
            centres[mask, h],
            centres[mask, v],
            s=22,
            color=colour,
            edgecolor="black",
            linewidth=0.4,
            label=label,
            zorder=3,
        )
    if len(centres) <= 40:
        for view, centre in enumerate(centres):
            axes.annotate(
                str(view),
                (centre[h], centre[v]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color="dimgray",
            )
