"""The march of `nerfcli.render.march` and the composite of `nerfcli.render.packed` as one
compiled loop per ray (numba): the fast no-grad render of scenes in world coordinates without
a tensor pass per operation.

In eager PyTorch the march is ~40 passes over the live samples of a bundle (cells, free radius,
windows, density, running sums, quantile search), each writing a tensor the next one reads;
here each ray walks its own samples once:
1. the sample's cell (the alpha mask's rule, `cell_index`), one byte a cell: occupied, or its
   free radius r (`free_radius`: every point within r cells of the cell, on each axis, is in
   an unoccupied cell). In a box scene r > 0 sends the ray to its first sample at or past
   t + r * reach, reach the depth the ray covers per cell on its fastest axis, a hair short
   (grid coords are affine in t there), so no occupied cell is jumped over; r = 0: the next
   sample. A contracted scene's ray takes its samples in blocks of 16 instead, each block's
   coords and cells in one vectorized pass (its background is mostly occupied, and a radius
   seldom reached past the next sample);
2. in an occupied cell the density is a trilinear read of the baked density feature (grid_sample
   with align_corners=True and zero padding), activated (softplus with a shift, or ReLU, times
   the distance scale), times the gap to the next sample and the direction's length; the ray
   stops once its optical depth before a sample reaches -log(stop_transmittance), as the march;
3. the kept samples are composited as `composite_packed`: weights exp(-before) - exp(-after)
   (float64 sums, each optical depth capped at TAU_CAP), opacity and depth, K groups by each
   sample's mass midpoint, and K colour quantiles (the first sample whose cdf reaches (k + 0.5)
   / K of the opacity, else the ray's last), one pick per distinct sample of a ray.
The colours of the picks are then evaluated in one batch by the caller's `colour_fn` (the
baked appearance and the decoder, in torch), and rgb = sum_k group weight_k * colour_k.

The loop runs without the GIL, so the render threads of `render_in_chunks` share the cores.
It is compiled on first use (a few seconds, then cached on disk next to this file); where
numba is not installed, `available()` is False and the caller takes the tensor march.
tests/unit/test_tensorf_world_fast.py renders every scene kind through both and the plain path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from nerfcli.render.composite import Composite
from nerfcli.render.samplers import EvenDepths, UnboundedDepths

CONTRACTIONS = {"none": 0, "l2": 1, "linf": 2}
ACTIVATIONS = {"relu": 0, "softplus": 1}
OCCUPIED = 255  # a cell's code when occupied (else its free radius in cells, at most 254)

# ray [U], grid coords [U, 3] (contracted for unbounded scenes) -> rgb [U, 3]
ColourFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DensityGrid:
    """What the loop reads, as numpy arrays (built once per bake, never written): the density
    feature at the vertices [Vz, Vy, Vx] (float32), one byte a cell for its occupancy and free
    radius (flat [Cz * Cy * Cx]: 7 MB for a 192^3 grid, against 35 MB as bool and float32),
    the box (grid coords = (x - lo) * scale - 1, then the halved contraction), and the
    activation sigma = density_scale * act(feature + shift)."""

    volume: np.ndarray
    cells: np.ndarray  # [Cz * Cy * Cx] uint8: OCCUPIED, else the free radius (floored, capped)
    lo: np.ndarray  # [3] float64
    scale: np.ndarray  # [3] float64
    lo32: np.ndarray  # [3] float32: the box's own bits (TensorfField.normalize's)
    scale32: np.ndarray  # [3] float32: 2 / (hi - lo) in float32, as normalize computes it
    contraction: int  # CONTRACTIONS
    activation: int  # ACTIVATIONS
    shift: float
    density_scale: float

    def arrays(self) -> tuple:
        """The loop's `grid` argument (march_loop.march_rays)."""
        return (
            self.volume,
            self.cells,
            self.lo,
            self.scale,
            self.lo32,
            self.scale32,
            self.contraction,
            self.activation,
            self.shift,
            self.density_scale,
        )

    @classmethod
    def of(
        cls,
        volume: torch.Tensor,  # [Vz, Vy, Vx]
        occupied: torch.Tensor,  # [Cz * Cy * Cx] bool, cells = vertices - 1 on each axis
        free: torch.Tensor,  # [Cz * Cy * Cx] free radius (occupancy.free_radius)
        aabb: torch.Tensor,  # [2, 3]
        contraction: str,
        activation: str,
        shift: float,
        density_scale: float,
    ) -> DensityGrid:
        lo, hi = aabb.double().cpu()
        lo32, hi32 = aabb.float().cpu()
        # one byte a cell, one read a step; a radius floored and capped is still a lower
        # bound on the empty space
        radius = free.floor().clamp(0, OCCUPIED - 1).to(torch.uint8)
        codes = torch.where(occupied.bool(), OCCUPIED, radius).to(torch.uint8)
        return cls(
            volume=volume.detach().float().contiguous().cpu().numpy(),
            cells=codes.contiguous().cpu().numpy(),
            lo=lo.numpy().copy(),
            scale=(2.0 / (hi - lo)).numpy().copy(),
            lo32=lo32.numpy().copy(),
            scale32=(2.0 / (hi32 - lo32)).numpy().copy(),
            contraction=CONTRACTIONS[contraction],
            activation=ACTIVATIONS[activation],
            shift=float(shift) if activation == "softplus" else 0.0,
            density_scale=float(density_scale),
        )


@cache
def _loop():
    """nerfcli.render.march_loop (imported on first use: importing numba takes ~0.5 s), or
    None without numba."""
    try:
        from nerfcli.render import march_loop
    except ImportError:
        return None
    return march_loop


def trilinear_texels(
    coords: torch.Tensor,  # [P, 3] grid coords
    row_of: torch.Tensor,  # [Vz * Vy * Vx] int32: each vertex's row, `absent` for none
    shape: tuple[int, int, int],  # (Vz, Vy, Vx)
    absent: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The rows [P, 8] of a sparse vertex table at the corners of each point's cell, their
    trilinear weights [P, 8] and whether a weighted corner has no row [P], in one compiled
    pass (march_loop.trilinear_texels); None without numba."""
    march_loop = _loop()
    if march_loop is None:
        return None
    count = len(coords)
    texels = np.empty((count, 8), np.int32)
    weights = np.empty((count, 8), np.float32)
    missing = np.empty(count, np.bool_)
    march_loop.trilinear_texels(
        _f32(coords), row_of.numpy(), *shape, absent, texels, weights, missing
    )
    return torch.from_numpy(texels), torch.from_numpy(weights), torch.from_numpy(missing)


def available() -> bool:
    """True where numba is installed (the compiled loop can run)."""
    return _loop() is not None


def march_composite(
    grid: DensityGrid,
    origins: torch.Tensor,  # [R, 3]
    directions: torch.Tensor,  # [R, 3]
    depths: torch.Tensor | EvenDepths | UnboundedDepths,  # [R, S] increasing, or a recipe
    stop_transmittance: float,
    count: int,  # K colour quantiles per ray
    colour_fn: ColourFn,
    white_bkgd: bool,
) -> tuple[Composite, tuple[int, int]]:
    """The composite [R] of `march` + `composite_packed` (module docstring), and (samples given
    density, colours evaluated). Composite.weights is empty: the loop keeps no per-sample
    weights."""
    march_loop = _loop()
    if march_loop is None:
        raise RuntimeError("the compiled march needs numba: pip install numba")
    num_rays = len(origins)
    stop_depth = -math.log(stop_transmittance) if stop_transmittance > 0 else math.inf
    opacity = np.zeros(num_rays, np.float32)
    depth = np.zeros(num_rays, np.float32)
    group_weights = np.zeros((num_rays, count), np.float32)
    source = np.full(num_rays * count, -1, np.int64)
    pick_ray = np.empty(num_rays * count, np.int64)
    pick_coords = np.empty((num_rays * count, 3), np.float32)
    read, picks = march_loop.march_rays(
        _f32(origins),
        _f32(directions),
        *_depth_arrays(depths, num_rays),
        grid.arrays(),
        stop_depth,
        opacity,
        depth,
        group_weights,
        source,
        pick_ray,
        pick_coords,
    )
    colour = colour_fn(torch.from_numpy(pick_ray[:picks]), torch.from_numpy(pick_coords[:picks]))
    rgb = np.zeros((num_rays, 3), np.float32)
    march_loop.blend(group_weights, source, _f32(colour), rgb)  # [R, 3]
    rgb = torch.from_numpy(rgb)
    opacity_t, depth_t = torch.from_numpy(opacity), torch.from_numpy(depth)
    disparity = 1.0 / torch.clamp(depth_t / opacity_t.clamp(min=1e-10), min=1e-10)
    if white_bkgd:
        rgb = rgb + (1.0 - opacity_t[:, None])
    empty = opacity_t.new_zeros(0)
    return Composite(rgb, depth_t, disparity, opacity_t, empty), (int(read), int(picks))


def _depth_arrays(depths, num_rays: int) -> tuple:
    """The loop's depth arguments (march_loop.march_rays): (mode, t_vals, per-ray p, q, per-sample
    c1, c2, inner count, near)."""
    if isinstance(depths, EvenDepths):  # near * (1 - u) + far * u
        lin = torch.linspace(0.0, 1.0, depths.count)  # [S] as stratified_samples
        per_ray = (_f32(depths.near), _f32(depths.far))
        return (
            1,
            np.zeros((0, depths.count), np.float32),
            *per_ray,
            _f32(1.0 - lin),
            _f32(lin),
            0,
            0.0,
        )
    if isinstance(depths, UnboundedDepths):  # near + (t_exit - near) * inner, t_exit / outer
        t_exit, span, inner, outer = depths.parts()
        rows = np.zeros((0, depths.count), np.float32)
        return (
            2,
            rows,
            _f32(t_exit),
            _f32(span),
            _f32(inner),
            _f32(outer),
            depths.n_inner,
            depths.near,
        )
    none = np.zeros(num_rays, np.float32)
    t_vals = _f32(depths)
    lin = np.zeros(t_vals.shape[1], np.float32)
    return 0, t_vals, none, none, lin, lin, 0, 0.0


def _f32(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().contiguous().cpu().numpy()
