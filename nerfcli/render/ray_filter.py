"""Which rays may meet occupied cells: the training rays a model with an alpha mask can still
learn from (TensoRF's `filtering_rays`).

A model that reads density only in occupied cells (TensoRF's alpha mask) gives a ray whose
samples all lie in unoccupied cells density 0 everywhere: its colour is the background and
its gradient is zero, so a batch spends it for nothing. `rays_meeting` finds the rays that may
meet an occupied cell, conservatively: every ray that does is kept, a few that pass close by
are kept too.

The test: the cells are pooled into coarse cells of `coarse` cells a side and dilated by one
coarse cell; each ray's segment in the box, [t_in, t_out] of samplers.box_interval, is sampled at a spacing of at most 0.9 of a
coarse cell's smallest side (both ends included), and the ray is kept when a sample is in a dilated
coarse cell. A point of the segment in an occupied cell is within half a spacing of a sample,
so within half a coarse cell on every axis: that sample lies in the point's coarse cell or a
neighbour of it, which the dilation marks. tests/unit/test_ray_filter.py checks it against a
far finer walk of random grids.

Where numba is installed each ray is walked by a compiled loop that stops at its first hit
(nerfcli.render.march_loop.rays_meeting); else in chunks of tensors, every sample read.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from nerfcli.render import compiled
from nerfcli.render.samplers import box_interval

# Cells a coarse cell has on each side, at most. On lego's final 174 x 200 x 200 mask (16 M
# training rays, 2 cores): 2 keeps 52.6% of the rays in 3.3 s, 4 keeps 62.8% in 2.0 s, 1 keeps
# 45.0% in 6.8 s. A small grid takes fewer (a coarse cell at most 1/16 of its smallest side).
COARSE = 2
CHUNK = 1 << 15  # rays a tensor pass reads at once (the fallback)


def coarse_cells(cells: torch.Tensor, coarse: int) -> torch.Tensor:
    """The coarse cells [Kz, Ky, Kx] (bool) of cells [Cz, Cy, Cx]: each holds `coarse` cells a
    side (the last ones fewer) and is set when any of its cells is occupied or any of its 26
    neighbours is."""
    pooled = F.max_pool3d(cells.float()[None, None], coarse, coarse, ceil_mode=True)
    return F.max_pool3d(pooled, 3, 1, padding=1)[0, 0] > 0


def rays_meeting(
    cells: torch.Tensor,  # [Cz, Cy, Cx] bool: the occupied cells of the box lo..hi
    lo: torch.Tensor,  # [3]
    hi: torch.Tensor,  # [3]
    origins: torch.Tensor,  # [R, 3]
    directions: torch.Tensor,  # [R, 3]
    near: float,
    far: float,
    coarse: int | None = None,
) -> torch.Tensor:
    """Whether each ray [R] (bool) may meet an occupied cell in the part of [near, far] inside
    the box (samplers.box_interval's segment; module docstring: every ray that does is True);
    `coarse`: cells a coarse cell has on each side (default: COARSE, fewer on a small grid)."""
    if coarse is None:
        coarse = max(1, min(COARSE, min(cells.shape) // 16))
    grid = coarse_cells(cells.cpu(), coarse)  # [Kz, Ky, Kx]
    box = torch.stack([lo.detach(), hi.detach()]).double().cpu()  # [2, 3]
    size = torch.tensor(cells.shape[::-1], dtype=torch.float64)  # (Cx, Cy, Cz)
    # coarse cells per unit length on each axis, and the spacing: 0.9 of a coarse cell's
    # smallest side (the margin keeps roundings inside the half cell the proof allows)
    per_unit = size / (box[1] - box[0]) / coarse  # [3]
    spacing = 0.9 * float((1.0 / per_unit).min())
    o = origins.detach().float().cpu().contiguous()
    d = directions.detach().float().cpu().contiguous()
    loop = compiled._loop()
    if loop is None:
        return _meeting_tensors(grid, box, per_unit, spacing, o, d, near, far).to(origins.device)
    cells_u8 = grid.to(torch.uint8).contiguous().numpy().reshape(-1)
    kz, ky, kx = grid.shape
    out = np.zeros(len(origins), np.bool_)
    o_np, d_np = o.numpy(), d.numpy()

    def walk(part: slice) -> None:
        loop.rays_meeting(
            o_np[part], d_np[part], float(near), float(far), box.numpy(), cells_u8,
            kx, ky, kz, per_unit.numpy(), spacing, out[part],
        )  # fmt: skip

    workers = max(1, min(torch.get_num_threads(), 8))
    step = math.ceil(len(origins) / workers) if len(origins) else 1
    parts = [slice(s, s + step) for s in range(0, len(origins), step)]
    with ThreadPoolExecutor(max(1, len(parts))) as pool:  # the loop runs without the GIL
        list(pool.map(walk, parts))
    return torch.from_numpy(out).to(origins.device)


def _meeting_tensors(
    grid: torch.Tensor,  # [Kz, Ky, Kx] bool
    box: torch.Tensor,  # [2, 3] float64
    per_unit: torch.Tensor,  # [3] float64
    spacing: float,
    origins: torch.Tensor,  # [R, 3]
    directions: torch.Tensor,  # [R, 3]
    near: float,
    far: float,
) -> torch.Tensor:
    """rays_meeting without numba: each chunk's rays sampled at its longest segment's count."""
    kz, ky, kx = grid.shape
    flat = grid.reshape(-1)
    top = torch.tensor([kx - 1, ky - 1, kz - 1])
    lo, per32 = box[0].float(), per_unit.float()
    out = torch.zeros(len(origins), dtype=torch.bool)
    for first in range(0, len(origins), CHUNK):
        part = slice(first, first + CHUNK)
        o, d = origins[part], directions[part]
        t0, t1 = box_interval(o, d, lo, box[1].float(), near, far)  # [r], [r]
        span = t1 - t0  # [r] (0 for a miss)
        length = (span * torch.linalg.norm(d, dim=-1)).max() if len(span) else 0.0
        count = int(math.ceil(float(length) / spacing)) + 1  # samples, both ends included
        t = t0[:, None] + span[:, None] * torch.linspace(0.0, 1.0, count)  # [r, N]
        points = o[:, None] + d[:, None] * t[..., None]  # [r, N, 3]
        index = ((points - lo) * per32).floor().long()  # [r, N, 3]
        index = torch.minimum(index.clamp(min=0), top)
        cell = (index[..., 2] * ky + index[..., 1]) * kx + index[..., 0]  # [r, N]
        out[part] = flat[cell].any(1) & (span > 0)  # a miss reads nothing in the box
    return out
