"""The occupancy estimator: which cells of a grid over the scene may hold visible density, so
that renders (and training) read the field only there. nerfacc's OccGridEstimator is the
pattern (an EMA of the density per cell, a binary grid, updated every few training steps);
this one is pure: it never imports a model and takes the density as a callback.

The grid spans grid coordinates [-1, 1]^3: the scene box, or for unbounded scenes the
contracted cube, contract(box coordinates) / 2 (nerfcli.render.contraction), as TensoRF's
grid does. It has cells (Cx, Cy, Cz) and keeps per VERTEX (a corner of the cells, Cz+1, Cy+1,
Cx+1 of them) an exponential moving maximum of the density (`vertex_density`, nerfacc's
`occs` EMA: new = max(decay * old, density)); a cell is occupied when the largest alpha
1 - exp(-sigma * step) over its 8 corners exceeds `alpha_threshold` (step: the sample spacing
there, a float or per vertex), then dilated by `dilation` cells.

Why corners: a field trilinear inside each cell (TensoRF's density feature at the field's own
grid, through a monotone activation) takes its largest value at a corner, so no sample whose
alpha exceeds the threshold is ever dropped (dilation 0). For other fields the corners bound
the cell only where the dense region is larger than a cell: a box of density at least a cell
wide on every axis always holds a corner of every cell it overlaps (dilation 0 is exact); a
ball of radius >= half a cell diagonal holds a vertex within one cell of every cell it
overlaps (dilation 1 is exact). tests/unit/test_occupancy.py checks both.

For a field that is not trilinear (the classic model's MLP) the corners bound nothing, so
`update(..., jitter=True)` evaluates each vertex at a random point within half a cell of it,
and the moving maximum gathers the cell's neighbourhood over updates (nerfacc's random point
per cell); with `mean_guard` the threshold is min(alpha_threshold, mean alpha), as nerfacc's
min(occ_thre, mean) keeps the densest cells of a young field, and a grid with no cell above it
keeps every cell (a network that has learnt nothing yet is not pruned to nothing).

State (buffers, so checkpoints carry them): `vertex_density` and `occupied`, both empty
(numel 0) until the first update (or `fill`): an empty grid marks every cell occupied.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nerfcli.render.contraction import contract

DensityFn = Callable[[torch.Tensor], torch.Tensor]  # grid coords [P, 3] -> sigma [P]


def occupied_cells(
    vertex_sigma: torch.Tensor, steps: torch.Tensor | float, threshold: float, dilation: int = 0
) -> torch.Tensor:
    """Cells [Cz, Cy, Cx] (bool) whose largest corner alpha 1 - exp(-sigma * step) exceeds
    `threshold`, from the density at the vertices [Cz+1, Cy+1, Cx+1], dilated by `dilation`
    cells."""
    alpha = 1.0 - torch.exp(-vertex_sigma * steps)  # [Vz, Vy, Vx]
    active = (alpha > threshold).float()[None, None]
    cells = F.max_pool3d(active, kernel_size=2, stride=1)  # [1, 1, Cz, Cy, Cx]
    if dilation > 0:
        size = 2 * dilation + 1
        cells = F.max_pool3d(cells, kernel_size=size, stride=1, padding=dilation)
    return cells[0, 0] > 0


class OccupancyGrid(nn.Module):
    """A binary occupancy grid of `cells` (x, y, z) over the box `aabb` [2, 3] (or the
    contracted cube around it when `contraction` is linf or l2)."""

    def __init__(
        self,
        aabb: torch.Tensor,
        cells: tuple[int, int, int],
        contraction: str = "none",
        alpha_threshold: float = 1e-4,
        dilation: int = 0,
        ema_decay: float = 0.95,
        mean_guard: bool = False,
    ):
        super().__init__()
        self.register_buffer("aabb", aabb.detach().clone().float())  # [2, 3] lo, hi
        self.register_buffer("vertex_density", torch.zeros(0))  # [Cz+1, Cy+1, Cx+1] EMA max
        self.register_buffer("occupied", torch.zeros(0, dtype=torch.bool))  # [Cz, Cy, Cx]
        self.cells = tuple(int(c) for c in cells)
        self.contraction = contraction
        self.alpha_threshold = float(alpha_threshold)
        self.dilation = int(dilation)
        self.ema_decay = float(ema_decay)
        self.mean_guard = bool(mean_guard)

    # ------------------------------------------------------------------ coordinates

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """World points [..., 3] -> grid coords [..., 3] ([-1, 1] inside the box; with a
        contraction, contract(box coords) / 2, inside [-1, 1] for every finite point)."""
        lo, hi = self.aabb[0], self.aabb[1]
        coords = (points - lo) * (2.0 / (hi - lo)) - 1.0
        if self.contraction != "none":
            return 0.5 * contract(coords, self.contraction)
        return coords

    def world_points(self, coords: torch.Tensor) -> torch.Tensor:
        """Grid coords [..., 3] -> world points [..., 3] (the inverse of `normalize`; boxes
        only: a contracted grid has no linear inverse)."""
        if self.contraction != "none":
            raise ValueError("world_points is for a grid over a box (no contraction)")
        lo, hi = self.aabb[0], self.aabb[1]
        return lo + (coords + 1.0) * (0.5 * (hi - lo))

    def inside(self, points: torch.Tensor) -> torch.Tensor:
        """[...] (bool): world points [..., 3] inside the box (every finite point when the
        grid spans a contracted cube)."""
        if self.contraction != "none":
            return torch.isfinite(points).all(-1)
        lo, hi = self.aabb[0], self.aabb[1]
        return ((points >= lo) & (points <= hi)).all(-1)

    def vertex_coords(self) -> torch.Tensor:
        """Grid coords of every vertex [Cz+1, Cy+1, Cx+1, 3] (x, y, z last)."""
        cx, cy, cz = self.cells
        axes = [torch.linspace(-1.0, 1.0, n + 1, device=self.aabb.device) for n in (cz, cy, cx)]
        z, y, x = torch.meshgrid(*axes, indexing="ij")
        return torch.stack([x, y, z], -1)

    @property
    def built(self) -> bool:
        return self.occupied.numel() > 0

    # ------------------------------------------------------------------ updates

    @torch.no_grad()
    def update(
        self,
        density_fn: DensityFn,
        steps: torch.Tensor | float,
        fraction: float = 1.0,
        generator: torch.Generator | None = None,
        chunk: int = 65536,
        jitter: bool = False,
    ) -> None:
        """Evaluate the density at the vertices (all of them, or a random `fraction` of them,
        as nerfacc updates a quarter of the cells a time), fold it into the moving maximum
        and rebuild the binary grid. steps: sample spacing (ray units), a float or per vertex
        [Cz+1, Cy+1, Cx+1]. jitter: each vertex is evaluated at a uniformly random point of the
        cell-sized cube centred on it (fields that are not trilinear)."""
        coords = self.vertex_coords().reshape(-1, 3)  # [V, 3]
        if jitter:
            size = 2.0 / torch.tensor(self.cells, dtype=coords.dtype)  # [3] x, y, z
            offset = torch.rand(coords.shape, generator=generator, device="cpu") - 0.5
            coords = coords + (offset * size).to(coords.device)
        if not self.built or fraction >= 1.0:
            index = torch.arange(len(coords), device=coords.device)
        else:
            count = max(1, int(len(coords) * fraction))
            index = torch.randperm(len(coords), generator=generator, device="cpu")[:count]
            index = index.to(coords.device)
        sigma = torch.cat(
            [density_fn(coords[index[i : i + chunk]]) for i in range(0, len(index), chunk)]
        )  # [V']
        shape = tuple(n + 1 for n in self.cells[::-1])
        if self.built:
            ema = self.vertex_density.reshape(-1) * self.ema_decay
            new = ema.index_put((index,), torch.maximum(ema[index], sigma.float()))
        else:
            new = torch.zeros(len(coords), device=coords.device).index_put((index,), sigma.float())
        self.set_vertex_density(new.view(shape), steps)

    @torch.no_grad()
    def set_vertex_density(self, sigma: torch.Tensor, steps: torch.Tensor | float) -> None:
        """Replace the moving maximum by sigma [Cz+1, Cy+1, Cx+1] (a field's exact vertex
        density) and rebuild the binary grid."""
        expected = tuple(n + 1 for n in self.cells[::-1])
        if tuple(sigma.shape) != expected:
            raise ValueError(f"vertex density shape {tuple(sigma.shape)}, expected {expected}")
        self.vertex_density = sigma.detach().float().clone()
        threshold = self.alpha_threshold
        if self.mean_guard:
            alpha = 1.0 - torch.exp(-self.vertex_density * steps)
            threshold = min(threshold, float(alpha.mean()))
        occupied = occupied_cells(self.vertex_density, steps, threshold, self.dilation)
        if self.mean_guard and not bool(occupied.any()):
            occupied = torch.ones_like(occupied)  # nothing learnt yet: keep every cell
        self.occupied = occupied

    def fill(self) -> None:
        """Every cell occupied and no density known (a new model's grid: built, so a render
        reads only inside the box; the first update replaces it)."""
        shape = tuple(n + 1 for n in self.cells[::-1])
        self.vertex_density = torch.zeros(shape, device=self.aabb.device)
        self.occupied = torch.ones(self.cells[::-1], dtype=torch.bool, device=self.aabb.device)

    def add_missing_state(self, state: dict, prefix: str) -> None:
        """A checkpoint saved before this grid existed (no `{prefix}occupied`): its keys added
        to `state`, empty (the box kept), so the grid loads not built."""
        if f"{prefix}occupied" in state:
            return
        for name, buffer in self.state_dict().items():
            empty = torch.zeros(0, dtype=buffer.dtype) if name != "aabb" else buffer
            state.setdefault(f"{prefix}{name}", empty.clone())

    def resize(self, cells: tuple[int, int, int]) -> None:
        """A new resolution: the grid is empty (every cell occupied) until the next update."""
        self.cells = tuple(int(c) for c in cells)
        self.vertex_density = torch.zeros(0, device=self.aabb.device)
        self.occupied = torch.zeros(0, dtype=torch.bool, device=self.aabb.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Take the stored grid's shapes (and cells) before loading its values."""
        stored = state_dict.get(prefix + "occupied")
        if stored is not None:
            self.occupied = torch.zeros(stored.shape, dtype=torch.bool, device=self.aabb.device)
            if stored.numel():
                self.cells = tuple(int(n) for n in stored.shape[::-1])
        density = state_dict.get(prefix + "vertex_density")
        if density is not None:
            self.vertex_density = torch.zeros(density.shape, device=self.aabb.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ queries

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """Occupancy [P] (bool) of the cell holding each grid coord [P, 3] (coords outside
        [-1, 1] are clamped to the border cells); all True before the first update."""
        if not self.built:
            return torch.ones(coords.shape[0], dtype=torch.bool, device=coords.device)
        return self.occupied.reshape(-1)[cell_index(self.occupied.shape, coords)]

    def occupied_fraction(self) -> float:
        """Fraction of cells occupied (1.0 before the first update)."""
        return float(self.occupied.float().mean()) if self.built else 1.0

    def frozen(self) -> FrozenOccupancy:
        """A read-only snapshot for renders: the cells and their free radii."""
        return FrozenOccupancy.build(self.occupied)


# Free radii (in cells): exact up to EXACT_FREE (that many dilations of the grid), then 2^L from
# the grid pooled by 2^L cells, up to 2^(FREE_LEVELS - 1).
EXACT_FREE = 16
FREE_LEVELS = 7


def dilate(cells: torch.Tensor) -> torch.Tensor:
    """cells [Z, Y, X] (bool) grown by one cell on every axis (the 26 neighbours: three
    shifted ORs, one per axis)."""
    out = cells.clone()
    for axis in range(3):
        size = out.shape[axis]
        if size < 2:
            continue
        grown = out.clone()
        grown.narrow(axis, 1, size - 1).logical_or_(out.narrow(axis, 0, size - 1))
        grown.narrow(axis, 0, size - 1).logical_or_(out.narrow(axis, 1, size - 1))
        out = grown
    return out


def free_radius(occupied: torch.Tensor) -> torch.Tensor:
    """A lower bound on the empty space around each cell [Cz, Cy, Cx] (float, in cells): any
    point less than this many cells (of each axis, on every axis) from a point in the cell is
    in an unoccupied cell. Radius k <= EXACT_FREE: no occupied cell within k cells (index
    difference <= k on every axis: the grid dilated k times is empty there). Radius 2^L beyond
    that: the block of 2^L cells holding the cell (blocks aligned to the grid's corner) and
    the 26 blocks around it are empty, and a point in the block is at least one block from
    anything outside those 3 x 3 x 3 blocks."""
    shape = occupied.shape
    radius = torch.zeros(shape)
    grown = occupied.bool()
    for _ in range(EXACT_FREE):  # radius k where the grid dilated k times is still empty
        grown = dilate(grown)
        if bool(grown.all()):
            break
        radius += ~grown
    for level in range(EXACT_FREE.bit_length(), FREE_LEVELS):
        size = 2**level
        if size > max(shape):
            break
        padded = F.pad(occupied.bool(), _padding(shape, size))  # multiples of size
        bz, by, bx = (n // size for n in padded.shape)
        blocks = padded.view(bz, size, by, size, bx, size).any(5).any(3).any(1)
        empty = ~dilate(blocks)  # [Bz, By, Bx]
        for axis in range(3):  # back to cells: each block repeated size times, cropped
            empty = empty.repeat_interleave(size, axis).narrow(axis, 0, shape[axis])
        radius[empty] = float(size)
    return radius


def _padding(shape: tuple[int, ...], size: int) -> tuple[int, ...]:
    """F.pad's (last axis first) padding of `shape` up to multiples of `size`."""
    return tuple(v for n in shape[::-1] for v in (0, -n % size))


class FrozenOccupancy:
    """Read-only occupancy for renders: the cells [Cz, Cy, Cx] (bool) and their free radius
    (`free_radius`: how far a ray may skip from a point in a cell without entering an occupied
    one), both flattened and read by one computed index per point (the cell holding grid coord
    c is floor((c + 1) / 2 * cells) on each axis, clamped into the grid: the alpha mask's
    rule). Built once per bake; never written after."""

    def __init__(self, occupied: torch.Tensor):
        self.shape = tuple(occupied.shape)  # (Cz, Cy, Cx)
        self.occupied = occupied.bool().reshape(-1).contiguous()  # [Cz * Cy * Cx]
        self.free = free_radius(occupied.bool()).reshape(-1).contiguous()  # [Cz * Cy * Cx]
        cz, cy, cx = self.shape
        self.cells = torch.tensor([cx, cy, cz], dtype=torch.float32)  # [3] (x, y, z)
        self.cell_size = 2.0 / self.cells  # [3] a cell's size in grid coords

    @classmethod
    def build(cls, occupied: torch.Tensor) -> FrozenOccupancy:
        if occupied.numel() == 0:  # not built: every cell occupied
            occupied = torch.ones(1, 1, 1, dtype=torch.bool)
        return cls(occupied)

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """Occupancy [...] (bool) at grid coords [..., 3] (clamped into the grid)."""
        return self.occupied.to(coords.device)[cell_index(self.shape, coords)]

    def free_at(self, coords: torch.Tensor) -> torch.Tensor:
        """Free radius [...] (cells, float) at grid coords [..., 3]."""
        return self.free.to(coords.device)[cell_index(self.shape, coords)]


def cell_index(shape: tuple[int, ...], coords: torch.Tensor) -> torch.Tensor:
    """Flat index [...] into cells of `shape` (Cz, Cy, Cx) of the cell holding each grid
    coord [..., 3]: floor((c + 1) / 2 * cells) on each axis, clamped into the grid (the alpha
    mask's rule; a non-finite coord lands in some cell, the caller masks it)."""
    cz, cy, cx = shape
    half = coords.new_tensor([cx, cy, cz]) * 0.5  # [3]
    index = torch.addcmul(half, coords, half).nan_to_num_(0.0)  # (c + 1) / 2 * cells
    index = torch.minimum(index.clamp_(min=0.0), 2.0 * half - 1.0).floor_()  # [..., 3]
    # the flat index as one product with the strides, exact while it fits the float's
    # mantissa (2^24 cells in float32; larger grids in float64); never autocast to bfloat16
    dtype = torch.float32 if cx * cy * cz <= 2**24 else torch.float64
    strides = torch.tensor([1.0, cx, cx * cy], dtype=dtype, device=coords.device)
    with torch.autocast(coords.device.type, enabled=False):
        return (index.to(dtype) @ strides).long()
