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

State (buffers, so checkpoints carry them): `vertex_density` and `occupied`, both empty
(numel 0) until the first update: an empty grid marks every cell occupied.
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

    # ------------------------------------------------------------------ coordinates

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """World points [..., 3] -> grid coords [..., 3] ([-1, 1] inside the box; with a
        contraction, contract(box coords) / 2, inside [-1, 1] for every finite point)."""
        lo, hi = self.aabb[0], self.aabb[1]
        coords = (points - lo) * (2.0 / (hi - lo)) - 1.0
        if self.contraction != "none":
            return 0.5 * contract(coords, self.contraction)
        return coords

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
    ) -> None:
        """Evaluate the density at the vertices (all of them, or a random `fraction` of them,
        as nerfacc updates a quarter of the cells a time), fold it into the moving maximum
        and rebuild the binary grid. steps: sample spacing (ray units), a float or per vertex
        [Cz+1, Cy+1, Cx+1]."""
        coords = self.vertex_coords().reshape(-1, 3)  # [V, 3]
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
        self.occupied = occupied_cells(
            self.vertex_density, steps, self.alpha_threshold, self.dilation
        )

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
        return self.frozen().lookup(coords)

    def occupied_fraction(self) -> float:
        """Fraction of cells occupied (1.0 before the first update)."""
        return float(self.occupied.float().mean()) if self.built else 1.0

    def frozen(self, coarse_factor: int = 4) -> FrozenOccupancy:
        """A read-only snapshot for renders: the grid and its coarse, dilated copy."""
        return FrozenOccupancy.build(self.occupied, coarse_factor)


class FrozenOccupancy:
    """Read-only occupancy for renders: the fine cells [Cz, Cy, Cx] and the coarse ones, the
    fine grid max-pooled by `factor` cells (padded to a multiple of it) and dilated by one
    coarse cell, so a coarse cell is occupied when any fine cell within one coarse cell of it
    (on every axis) is. Both are float volumes read by grid_sample's nearest mode (one kernel
    for a whole batch of points; align_corners=False puts the cell edges at -1 and 1).
    Built once per bake; never written after."""

    def __init__(self, fine: torch.Tensor, coarse: torch.Tensor, factor: int):
        self.fine_shape = tuple(fine.shape)  # (Cz, Cy, Cx)
        self.fine_volume = fine.float()[None, None].contiguous()  # [1, 1, Cz, Cy, Cx]
        self.coarse_shape = tuple(coarse.shape)
        self.coarse_volume = coarse.float()[None, None].contiguous()
        self.factor = factor
        cells = torch.tensor(self.fine_shape[::-1], dtype=torch.float32)  # (Cx, Cy, Cz)
        padded = torch.tensor(self.coarse_shape[::-1], dtype=torch.float32) * factor
        # grid coords -> the coarse volume's coords (the padding lies past +1)
        self.coarse_scale = cells / padded  # [3]
        # the coarse cell's size in grid coords (the smallest over the axes)
        self.coarse_size = float((2.0 * factor / cells).min())

    @classmethod
    def build(cls, occupied: torch.Tensor, factor: int = 4) -> FrozenOccupancy:
        if occupied.numel() == 0:  # not built: every cell occupied
            occupied = torch.ones(1, 1, 1, dtype=torch.bool)
        factor = max(1, min(factor, *occupied.shape))
        pooled = F.max_pool3d(
            occupied.float()[None, None], kernel_size=factor, stride=factor, ceil_mode=True
        )
        coarse = F.max_pool3d(pooled, kernel_size=3, stride=1, padding=1)[0, 0] > 0
        return cls(occupied.bool(), coarse, factor)

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """Fine occupancy [...] (bool) at grid coords [..., 3] (clamped into the grid)."""
        return _nearest(self.fine_volume, coords)

    def lookup_coarse(self, coords: torch.Tensor) -> torch.Tensor:
        """Coarse (pooled, dilated) occupancy [...] (bool) at grid coords [..., 3]."""
        scale = self.coarse_scale.to(coords.device)
        return _nearest(self.coarse_volume, (coords + 1.0) * scale - 1.0)


def _nearest(volume: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """The cell value of volume [1, 1, D, H, W] holding each coord [..., 3] -> bool [...]."""
    grid = coords.reshape(1, 1, 1, -1, 3)
    out = F.grid_sample(volume, grid, mode="nearest", padding_mode="border", align_corners=False)
    return out.view(coords.shape[:-1]) > 0.5
