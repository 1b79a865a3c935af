"""The TensoRF radiance field: its parameters (vector-matrix factors, appearance basis, colour
decoder), the scene box it lives in, and their evaluation at box coordinates.

    density_feature(p) = sum_m sum_c P_m[c](p_plane) * L_m[c](p_line)            (a scalar)
    appearance(p)      = basis @ concat_m( P'_m[c](p_plane) * L'_m[c](p_line) )  (app_dim)
    sigma = distance_scale * activation(density_feature)      (relu, or softplus(x + shift))
    rgb   = sigmoid(MLP([appearance, view direction, their positional encodings]))

The fast evaluations (their plain references are in nerfcli.models.reference, and tests check
that they agree in values and gradients):
- `density_feature`: the factors multiplied out into a dense [Rz, Ry, Rx] volume (three matrix
  products) and read trilinearly: 8 scalar reads instead of 4 x 24 + 2 x 24.
- `density_slices`, for NDC rays that share the z of every sample: the factors multiplied out
  into S z-slices [S, Ry, Rx] and each sample read bilinearly from its slice, in ONE
  grid_sample call threaded over the slices.
- `appearance`: the planes split into equal channel groups (a free view) and planes of one size
  batched together, so the xz and yz planes (and the 48-channel xy plane's groups) go through
  single grid_sample calls, which PyTorch's CPU kernel threads over the batch dimension.
No-grad renders reuse the volume, slices and stacked planes across chunks (`_cached`: a
snapshot of the weights, dropped by training steps, train()/eval(), loading and upsampling; no
lock, no tensor-version keys), and bake the appearance on the render's z-slices once they have
rendered enough rays to pay for it (`appearance_table`, read by fast.py's `gather_slices`).
The alpha mask marks the grid cells that may hold visible density.
Unbounded scenes (`contraction` linf or l2): the box is the inner region and the grid spans
the contracted cube, contract(box coordinates) / 2 (nerfcli.render.contraction), so the box
fills the middle half of the grid on each axis and all of space the rest.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nerfcli.data.rays import Rays
from nerfcli.models.encoding import positional_encoding
from nerfcli.models.tensorf.config import TensorfModelConfig
from nerfcli.models.tensorf.factors import (
    LINE_AXES,
    PLANE_AXES,
    appearance_at_depths,
    crop_factors,
    density_at_depths,
    density_volume,
    make_factors,
    resample_factors,
    sample_stacked,
    stack_factors,
    trilinear_gather,
)
from nerfcli.render.contraction import contract, radial_stretch

# Baked appearance slices (TensorfField.appearance_table): built once a model has rendered
# vertices / BAKE_AFTER rays (the bake costs about as much as colouring vertices / 32 rays at 8
# colours each), and never larger than this.
BAKE_AFTER = 16
BAKE_MAX_BYTES = 2e9
# Stored in half precision (read as fast as float32 on 2 cores, half the memory: 1.2 GB at
# 448 x 448 x 112 slices x 27 features); the features keep 11 significant bits.
BAKE_DTYPE = torch.float16
# Under grad, density reads the factors directly for batches of fewer points than vertices /
# this, else the dense volume. Forward + backward, 1 thread, 16/4/4 components (AMD EPYC Zen 4,
# busy machine): at 192^3, 22 k points take 27 ms direct against 201 ms through the volume,
# 300 k take 213 against 295 ms; at 448 x 448 x 128, 300 k take 301 against 642 ms and 1 M
# take 1736 against 1022 ms. 30 sits between the crossovers.
DIRECT_POINTS_RATIO = 30
# Cells kept around the alpha mask's occupied cells when the box shrinks to them (TensoRF
# dilates its mask by one cell before taking the bounding box).
SHRINK_MARGIN = 1
# NDC rays whose mean z origin and direction lie this close to -1 and 2 (`shares_depth` allows
# a spread of 1e-5) take their slices at -1 and 2 exactly (`slice_depths`).
NDC_SNAP = 1e-5


class ColourDecoder(nn.Module):
    """[features, viewdirs, PE(features), PE(viewdirs)] -> width -> width -> rgb (sigmoid)."""

    def __init__(self, in_features: int, width: int, feature_pe: int, view_pe: int):
        super().__init__()
        self.feature_pe = feature_pe
        self.view_pe = view_pe
        in_channels = in_features + 3 + 2 * feature_pe * in_features + 2 * view_pe * 3
        self.layers = nn.Sequential(
            nn.Linear(in_channels, width),
            nn.ReLU(inplace=True),
            nn.Linear(width, width),
            nn.ReLU(inplace=True),
            nn.Linear(width, 3),
        )
        nn.init.constant_(self.layers[-1].bias, 0.0)

    def forward(self, features: torch.Tensor, viewdirs: torch.Tensor) -> torch.Tensor:
        inputs = [features, viewdirs]  # [P, F], [P, 3]
        if self.feature_pe > 0:
            inputs.append(positional_encoding(features, self.feature_pe, include_input=False))
        if self.view_pe > 0:
            inputs.append(positional_encoding(viewdirs, self.view_pe, include_input=False))
        return torch.sigmoid(self.layers(torch.cat(inputs, -1)))  # [P, 3]


class TensorfField(nn.Module):
    """Factors, basis and decoder over the box `aabb` [2, 3] (a buffer, so checkpoints restore
    it), at `resolution` (x, y, z) vertices; the alpha mask [Rz-1, Ry-1, Rx-1] is empty
    (numel 0) until the first update."""

    def __init__(self, m: TensorfModelConfig, box: torch.Tensor):
        super().__init__()
        self.cfg = m
        self.register_buffer("aabb", box)  # [2, 3] lo, hi
        self.register_buffer("alpha_mask", torch.zeros(0, dtype=torch.bool))
        self.resolution = tuple(m.grid_init)
        self.density_planes, self.density_lines = make_factors(
            m.density_components, self.resolution, m.init_scale
        )
        self.app_planes, self.app_lines = make_factors(
            m.appearance_components, self.resolution, m.init_scale
        )
        self.basis = nn.Linear(sum(m.appearance_components), m.app_dim, bias=False)
        self.decoder = ColourDecoder(m.app_dim, m.decoder_width, m.feature_pe, m.view_pe)
        # no-grad renders reuse derived tensors (density volume, stacked planes) across chunks
        self._caches: dict[str, tuple[tuple, object]] = {}
        # (cache key, rays rendered with it) for the baked appearance slices
        self._table_demand: tuple[tuple, int] = ((), 0)
        self._baking = False  # a render thread is baking the appearance table

    def grid_parameters(self) -> list[nn.Parameter]:
        return [*self.density_planes, *self.density_lines, *self.app_planes, *self.app_lines]

    def network_parameters(self) -> list[nn.Parameter]:
        return [*self.basis.parameters(), *self.decoder.parameters()]

    @property
    def contracted(self) -> bool:
        return self.cfg.contraction != "none"

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """World/NDC points [..., 3] -> grid coordinates [..., 3]: in [-1, 1] inside the box;
        with a contraction, contract(box coordinates) / 2, in [-1, 1] for every finite point."""
        lo, hi = self.aabb[0], self.aabb[1]
        coords = (points - lo) * (2.0 / (hi - lo)) - 1.0
        if self.contracted:
            return 0.5 * contract(coords, self.cfg.contraction)
        return coords

    def inner_voxels(self) -> torch.Tensor:
        """Voxels [3] (x, y, z) across the box: resolution - 1, or half that with a
        contraction (the box fills the middle half of the grid)."""
        voxels = torch.tensor(self.resolution, dtype=torch.float32) - 1.0
        return 0.5 * voxels if self.contracted else voxels

    def outer_samples(self) -> int:
        """Samples per ray past the box with a contraction: cfg.outer_samples, or one per
        contracted voxel / step_ratio across the outer shell (a quarter of the grid's
        vertices on the mean axis), as the box's samples are spaced."""
        if self.cfg.outer_samples > 0:
            return self.cfg.outer_samples
        shell_voxels = float(torch.mean(self.inner_voxels())) / 2.0
        return max(2, int(round(shell_voxels / self.cfg.step_ratio)))

    def _cached(self, name: str, params: list[torch.Tensor], build, extra: tuple = ()):
        """build() under grad; without grad, reused while `extra` is equal, until
        clear_caches(). The caches hold a snapshot of the weights: they are dropped by every
        grad-enabled call (a training step), train() / eval(), loading and upsampling (see
        TensorfModel), never by comparing tensor versions. Render threads share them without
        a lock: two threads missing the same entry both build it (the same values) and the
        last one stored stays, a benign race. `params` documents what the entry derives from.
        """
        if torch.is_grad_enabled():
            if self._caches:  # training again: the render caches are stale
                self.clear_caches()
            return build()
        hit = self._caches.get(name)
        if hit is None or hit[0] != extra:
            hit = (extra, build())
            self._caches[name] = hit
        return hit[1]

    def clear_caches(self) -> None:
        """Forget the derived tensors (after the factors were replaced)."""
        self._caches = {}
        self._table_demand = ((), 0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.clear_caches()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ density

    def density_volume(self) -> torch.Tensor:
        """The density feature at every grid vertex [Rz, Ry, Rx]."""
        return density_volume(list(self.density_planes), list(self.density_lines))

    def density_feature(self, coords: torch.Tensor) -> torch.Tensor:
        """Density feature at box coords [..., 3] inside the box -> [...]. Under grad, a
        batch of fewer points than vertices / DIRECT_POINTS_RATIO (the samples an alpha mask
        leaves) reads the factors directly instead of building the dense volume: the same
        trilinear value (a sum of separable products), for a cost that scales with the
        points instead of the grid."""
        params = [*self.density_planes, *self.density_lines]
        if torch.is_grad_enabled():
            vertices = math.prod(self.resolution)
            if coords[..., 0].numel() * DIRECT_POINTS_RATIO < vertices:
                return self.density_direct(coords)
        volume = self._cached("density_volume", params, self.density_volume)  # [Rz, Ry, Rx]
        if not torch.is_grad_enabled():  # one fused kernel; its backward is the slow part
            grid = coords.clamp(-1.0, 1.0).reshape(1, 1, 1, -1, 3)
            out = F.grid_sample(volume[None, None], grid, align_corners=True)  # [1,1,1,1,P]
            return out.view(coords.shape[:-1])
        return trilinear_gather(volume, coords)

    def slice_depths(self, rays: Rays, t_row: torch.Tensor) -> torch.Tensor:
        """Box z [S] of the samples at depths t_row [S] of rays [R] that share them (NDC rays
        all start at z = -1 with direction z = 2)."""
        lo, hi = self.aabb[0], self.aabb[1]
        o_z, d_z = float(rays.origins[:, 2].mean()), float(rays.directions[:, 2].mean())
        if abs(o_z + 1.0) <= NDC_SNAP and abs(d_z - 2.0) <= NDC_SNAP:
            # -1 and 2 exactly: float32 leaves NDC rays an ulp or two off, by a mean that
            # differs between chunks and views, and z keys the baked slices (fern's spiral
            # rebuilt its 4-second appearance table at 5 of 120 frames)
            o_z, d_z = -1.0, 2.0
        return (o_z + t_row * d_z - lo[2]) * (2.0 / (hi[2] - lo[2])) - 1.0

    def slice_stack(self, z: torch.Tensor) -> torch.Tensor:
        """The density feature on the z-slices z [S]: [S, Ry, Rx] (reused by no-grad renders
        while the factors and z are unchanged)."""

        def build() -> torch.Tensor:
            return density_at_depths(list(self.density_planes), list(self.density_lines), z)

        params = [*self.density_planes, *self.density_lines]
        return self._cached("density_slices", params, build, (tuple(z.tolist()),))

    def slice_cache(self, name: str, z: torch.Tensor, build):
        """build(), reused by no-grad renders while the density factors and z [S] are
        unchanged (tensors derived from the slices, such as the fast path's occupancy)."""
        params = [*self.density_planes, *self.density_lines]
        return self._cached(name, params, build, (tuple(z.tolist()),))

    def density_slices(self, rays: Rays, t_row: torch.Tensor) -> torch.Tensor:
        """Density [R, S] for rays [R] that share the z of every sample (NDC rays, t_row [S]
        shared). Samples outside the box (or dropped by the alpha mask) get zero density."""
        lo, hi = self.aabb[0], self.aabb[1]
        scale = 2.0 / (hi - lo)  # [3]
        o, d = rays.origins, rays.directions  # [R, 3]
        # box x, y of every sample, built directly in grid_sample's [S, R, 2] layout
        start = (o[:, :2] - lo[:2]) * scale[:2] - 1.0  # [R, 2]
        grid = torch.addcmul(start[None], t_row[:, None, None], (d[:, :2] * scale[:2])[None])
        z = self.slice_depths(rays, t_row)  # [S]
        slices = self.slice_stack(z)  # [S, Ry, Rx]
        feature = F.grid_sample(slices[:, None], grid[:, :, None, :], align_corners=True)
        feature = feature.view(t_row.shape[0], -1).t()  # [R, S]
        inside = (grid.abs() <= 1.0).all(-1) & (z.abs() <= 1.0)[:, None]  # [S, R]
        valid = inside.t()  # [R, S]
        x, y = grid[..., 0].t(), grid[..., 1].t()  # [R, S]
        if self.alpha_mask.numel():
            coords = torch.stack([x, y, z[None].expand_as(x)], -1).reshape(-1, 3)
            valid = valid & self.alpha_mask_lookup(coords).view_as(valid)
        return self.activate_density(feature) * valid

    def activate_density(self, feature: torch.Tensor) -> torch.Tensor:
        if self.cfg.density_activation == "relu":
            return self.cfg.distance_scale * F.relu(feature)
        return self.cfg.distance_scale * F.softplus(feature + self.cfg.density_shift)

    # ------------------------------------------------------------------ appearance

    def appearance(self, coords: torch.Tensor) -> torch.Tensor:
        """Appearance features at box coords [..., 3] -> [..., app_dim]: planes and lines each
        in one grid_sample call per plane size."""
        products = self._factor_products("app", self.app_planes, self.app_lines, coords)
        features = self.basis(products)  # [P, app_dim]
        return features.view(*coords.shape[:-1], -1)

    def density_direct(self, coords: torch.Tensor) -> torch.Tensor:
        """Density feature at box coords [..., 3] read from the factors (one grid_sample per
        plane size and per line size) -> [...]."""
        products = self._factor_products(
            "density", self.density_planes, self.density_lines, coords
        )  # [P, sum C]
        return products.sum(-1).view(coords.shape[:-1])

    def _factor_products(
        self, name: str, planes: nn.ParameterList, lines: nn.ParameterList, coords: torch.Tensor
    ) -> torch.Tensor:
        """plane x line products [P, sum C] of one factor set at box coords [..., 3]."""
        flat = coords.reshape(-1, 3)  # [P, 3]
        stacked_planes = self._cached(
            f"{name}_planes", list(planes), lambda: stack_factors(list(planes))
        )
        stacked_lines = self._cached(
            f"{name}_lines", list(lines), lambda: stack_factors(list(lines))
        )
        plane_coords = [flat[:, PLANE_AXES[mode]] for mode in range(3)]
        zeros = torch.zeros_like(flat[:, 0])
        line_coords = [torch.stack([zeros, flat[:, LINE_AXES[mode]]], -1) for mode in range(3)]
        plane_features = sample_stacked(stacked_planes, plane_coords)  # [P, sum C]
        line_features = sample_stacked(stacked_lines, line_coords)  # [P, sum C]
        return plane_features * line_features

    def appearance_table(self, z: torch.Tensor, num_rays: int) -> torch.Tensor | None:
        """The baked appearance slices [S, Ry, Rx, A] on z [S] (factors.appearance_at_depths),
        once they pay: after the model has rendered, without grad, at these z, as many rays as
        the table has vertices / BAKE_AFTER (about 7 views of 504 x 378 at the CPU profile's
        grid), and only while the table stays under BAKE_MAX_BYTES. None before, and to the
        other render threads while one bakes (the caller reads the factors). No lock: the
        demand count and the baking flag are plain attributes; a lost count only delays the
        bake, and two threads passing the flag at once both bake the same table."""
        key = (tuple(z.tolist()),)
        ry, rx = self.app_planes[0].shape[2:]
        vertices = ry * rx * z.shape[0]
        if vertices * self.basis.weight.shape[0] * BAKE_DTYPE.itemsize > BAKE_MAX_BYTES:
            return None
        hit = self._caches.get("app_table")
        if hit is not None and hit[0] == key:
            return hit[1]
        seen_key, seen = self._table_demand
        seen = (seen if seen_key == key else 0) + num_rays
        self._table_demand = (key, seen)
        if seen * BAKE_AFTER < vertices or torch.is_grad_enabled() or self._baking:
            return None  # not yet worth it, or another render thread is baking it
        self._baking = True
        try:
            table = appearance_at_depths(
                list(self.app_planes), list(self.app_lines), self.basis.weight, z, BAKE_DTYPE
            )
        finally:
            self._baking = False
        self._caches["app_table"] = (key, table)
        return table

    # ------------------------------------------------------------------ grid changes

    @torch.no_grad()
    def upsample(self, resolution: tuple[int, int, int]) -> None:
        """Resample every factor to `resolution` (x, y, z) vertices; the alpha mask, if any,
        is rebuilt on the new grid."""
        resolution = tuple(int(r) for r in resolution)
        resample_factors(self.density_planes, self.density_lines, resolution)
        resample_factors(self.app_planes, self.app_lines, resolution)
        self.resolution = resolution
        self.clear_caches()
        if self.alpha_mask.numel():
            self.update_alpha_mask()

    @torch.no_grad()
    def shrink(self, margin: int = SHRINK_MARGIN) -> bool:
        """Crop the box and the factors to the cells the alpha mask keeps, plus `margin` cells
        on every side (TensoRF's `shrink`, for box scenes): the same field inside the new box,
        whose vertices are old ones, so later upsamplings spend the grid where the scene is.
        False (nothing changed) without a mask, with an empty one, or when the occupied cells
        reach every face."""
        mask = self.alpha_mask  # [Cz, Cy, Cx]
        if self.contracted or mask.numel() == 0 or not bool(mask.any()):
            return False
        occupied = mask.nonzero()  # [N, 3] (z, y, x)
        vertices = torch.tensor(self.resolution)  # [3] (x, y, z)
        first = (occupied.amin(0).flip(0).cpu() - margin).clamp(min=0)  # [3] vertex index
        last = torch.minimum(occupied.amax(0).flip(0).cpu() + 1 + margin, vertices - 1)
        if bool((first == 0).all()) and bool((last == vertices - 1).all()):
            return False
        crop = (tuple(first.tolist()), tuple(last.tolist()))
        crop_factors(self.density_planes, self.density_lines, *crop)
        crop_factors(self.app_planes, self.app_lines, *crop)
        lo, hi = self.aabb[0].double().cpu(), self.aabb[1].double().cpu()
        voxel = (hi - lo) / (vertices.double() - 1.0)
        new_lo = torch.where(first == 0, lo, lo + first.double() * voxel)
        new_hi = torch.where(last == vertices - 1, hi, lo + last.double() * voxel)
        self.aabb.copy_(torch.stack([new_lo, new_hi]).to(self.aabb))
        self.resolution = tuple(int(n) for n in (last - first + 1).tolist())
        self.clear_caches()
        # the kept cells' mask, as update_alpha_mask would recompute it (the same vertex
        # densities and the same voxel size)
        (x0, y0, z0), (x1, y1, z1) = crop
        self.alpha_mask = mask[z0:z1, y0:y1, x0:x1].contiguous()
        return True

    def mask_step(self) -> float:
        """Sample spacing inside the box (in ray units, |d| = 1) the alpha-mask threshold
        refers to."""
        size = (self.aabb[1] - self.aabb[0]).cpu()
        return float(torch.mean(size / self.inner_voxels())) * self.cfg.step_ratio

    def vertex_steps(self) -> torch.Tensor | float:
        """Sample spacing in ray units at every grid vertex [Rz, Ry, Rx] with a contraction
        (a float without): outside the box the samples are about 1 / outer_samples apart in
        contracted units along the ray (uniform in disparity), each spanning radial_stretch
        times that in box units; the larger of that and the box spacing is taken, so the
        mask keeps a cell whenever a sample there could reach the threshold."""
        if not self.contracted:
            return self.mask_step()
        rx, ry, rz = self.resolution
        axes = [torch.linspace(-2.0, 2.0, n, device=self.aabb.device) for n in (rz, ry, rx)]
        z, y, x = torch.meshgrid(*axes, indexing="ij")
        stretch = radial_stretch(torch.stack([x, y, z], -1), self.cfg.contraction)  # [Rz,Ry,Rx]
        half = float(torch.mean(self.aabb[1] - self.aabb[0])) / 2.0  # box units -> ray units
        outer = half / self.outer_samples()  # contracted spacing 1 / outer_samples, in ray units
        return torch.clamp(stretch * outer, min=self.mask_step())

    @torch.no_grad()
    def update_alpha_mask(self) -> None:
        """Mark grid cells that may hold alpha > alpha_mask_threshold.

        The density feature is trilinear inside a cell and the activation is monotone, so the
        largest density in a cell is at one of its 8 corners: a cell is kept when any corner is
        above the threshold, which never drops a significant sample (tested).
        """
        sigma = self.activate_density(self.density_volume())  # [Rz, Ry, Rx]
        alpha = 1.0 - torch.exp(-sigma * self.vertex_steps())
        active = (alpha > self.cfg.alpha_mask_threshold).float()[None, None]
        cells = F.max_pool3d(active, kernel_size=2, stride=1)[0, 0] > 0  # [Rz-1, Ry-1, Rx-1]
        self.alpha_mask = cells

    def alpha_mask_lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """Occupancy [P] (bool) of the grid cell holding each coord [P, 3]; all True without
        a mask."""
        if self.alpha_mask.numel() == 0:
            return torch.ones(coords.shape[0], dtype=torch.bool, device=coords.device)
        cz, cy, cx = self.alpha_mask.shape
        cells = coords.new_tensor([cx, cy, cz])  # [3]
        index = ((coords.clamp(-1.0, 1.0) + 1.0) * (0.5 * cells)).long()  # [P, 3]
        index = torch.minimum(index, (cells - 1).long())
        flat = (index[:, 2] * cy + index[:, 1]) * cx + index[:, 0]  # [P]
        return self.alpha_mask.reshape(-1)[flat]

    def occupancy(self) -> float:
        """Fraction of grid cells kept by the alpha mask (1.0 without one)."""
        if self.alpha_mask.numel() == 0:
            return 1.0
        return float(self.alpha_mask.float().mean())
