"""TensoRF's vector-matrix factors: their layout, creation and resampling, and the tensor maths
that reads them (a dense density volume, z-slices, batched plane sampling, trilinear reads).
Plain functions of plane and line tensors; the field (field.py) owns them as parameters.

Three modes m (xy|z, xz|y, yz|x), each a plane P_m [1, C_m, H, W] and a line L_m [1, C_m, L, 1]
over the scene box, read bilinearly / linearly with align_corners=True, so grid vertices sit at
integer pixel positions and at the box corners. A plane (bilinear in its two axes) times a line
(linear in the third) is trilinear inside a voxel, which is what the dense reads rely on.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

# (plane axes, line axis) per mode; axes index (x, y, z). Plane tensors are [1, C, H, W] with W
# along the first axis listed and H along the second, as grid_sample reads (x, y) = (W, H).
PLANE_AXES = ((0, 1), (0, 2), (1, 2))
LINE_AXES = (2, 1, 0)


# ----------------------------------------------------------------------------- storage


def make_factors(
    components: tuple[int, int, int], resolution: tuple[int, int, int], scale: float
) -> tuple[nn.ParameterList, nn.ParameterList]:
    """Planes and lines for `components` channels per mode at `resolution` (x, y, z) vertices,
    drawn from N(0, scale^2) (plane then line, mode by mode)."""
    planes, lines = [], []
    for mode in range(3):
        (a, b), c = PLANE_AXES[mode], LINE_AXES[mode]
        planes.append(
            nn.Parameter(scale * torch.randn(1, components[mode], resolution[b], resolution[a]))
        )
        lines.append(nn.Parameter(scale * torch.randn(1, components[mode], resolution[c], 1)))
    return nn.ParameterList(planes), nn.ParameterList(lines)


@torch.no_grad()
def resample_factors(
    planes: nn.ParameterList, lines: nn.ParameterList, resolution: tuple[int, int, int]
) -> None:
    """Replace every plane and line by its resampling to `resolution` (x, y, z) vertices
    (bilinear/linear with align_corners=True, so the represented field is kept up to
    interpolation)."""
    for mode in range(3):
        (a, b), c = PLANE_AXES[mode], LINE_AXES[mode]
        plane = F.interpolate(
            planes[mode].data,
            size=(resolution[b], resolution[a]),
            mode="bilinear",
            align_corners=True,
        )
        line = F.interpolate(
            lines[mode].data, size=(resolution[c], 1), mode="bilinear", align_corners=True
        )
        planes[mode] = nn.Parameter(plane.contiguous())
        lines[mode] = nn.Parameter(line.contiguous())


@torch.no_grad()
def crop_factors(
    planes: nn.ParameterList,
    lines: nn.ParameterList,
    first: tuple[int, int, int],
    last: tuple[int, int, int],
) -> None:
    """Keep only the vertices first .. last (inclusive, x, y, z) of every plane and line: over
    the box those vertices span, the same field, value for value (the kept vertices are the
    new box's grid, read with align_corners=True as before)."""
    for mode in range(3):
        (a, b), c = PLANE_AXES[mode], LINE_AXES[mode]
        plane = planes[mode].data[:, :, first[b] : last[b] + 1, first[a] : last[a] + 1]
        line = lines[mode].data[:, :, first[c] : last[c] + 1]
        planes[mode] = nn.Parameter(plane.contiguous())
        lines[mode] = nn.Parameter(line.contiguous())


def factor_resolution(planes: list[torch.Tensor]) -> tuple[int, int, int]:
    """The (x, y, z) vertex counts of a factor set, read from its xy and xz planes."""
    return int(planes[0].shape[3]), int(planes[0].shape[2]), int(planes[1].shape[2])


def grid_schedule(
    grid_init: tuple[int, int, int], grid_final: tuple[int, int, int], stages: int
) -> list[tuple[int, int, int]]:
    """Resolutions [stages + 1] from grid_init to grid_final, geometric per axis."""
    out = []
    for k in range(stages + 1):
        frac = k / stages if stages else 0.0
        out.append(
            tuple(
                int(round(a * (b / a) ** frac)) if k < stages else int(b)
                for a, b in zip(grid_init, grid_final)
            )
        )
    return out


# ----------------------------------------------------------------------------- dense reads


def density_volume(planes: list[torch.Tensor], lines: list[torch.Tensor]) -> torch.Tensor:
    """The summed plane x line products at every grid vertex [Rz, Ry, Rx]: three matrix
    products."""
    p_xy, p_xz, p_yz = (p[0] for p in planes)  # [C0, Ry, Rx], [C1, Rz, Rx], [C2, Rz, Ry]
    l_z, l_y, l_x = (line[0, :, :, 0] for line in lines)  # [C0, Rz], [C1, Ry], [C2, Rx]
    rx, ry, rz = p_xy.shape[2], p_xy.shape[1], p_xz.shape[1]
    volume = (l_z.t() @ p_xy.reshape(p_xy.shape[0], -1)).view(rz, ry, rx)
    volume = volume + torch.matmul(l_y.t()[None], p_xz.transpose(0, 1))  # [Rz, Ry, Rx]
    volume = volume + (p_yz.reshape(p_yz.shape[0], -1).t() @ l_x).view(rz, ry, rx)
    return volume


def density_at_depths(
    planes: list[torch.Tensor],
    lines: list[torch.Tensor],
    z: torch.Tensor,  # [S] box z coordinates in [-1, 1]
) -> torch.Tensor:
    """The summed products on z-slices [S, Ry, Rx], straight from the factors (no [Rz, Ry, Rx]
    volume): the xy mode is one [S, C] x [C, Ry*Rx] product and the xz and yz modes, rank-C
    outer products per slice, one batched product."""
    p_xy, p_xz, p_yz = (p[0] for p in planes)  # [C0, Ry, Rx] [C1, Rz, Rx] [C2, Rz, Ry]
    l_z, l_y, l_x = (line[0, :, :, 0] for line in lines)  # [C0, Rz] [C1, Ry] [C2, Rx]
    at_depth = partial(_at_depth, z=z)  # [C, Rz, ...] -> [S, C, ...]
    num = z.shape[0]
    ry, rx = p_xy.shape[1], p_xy.shape[2]
    lz_at = at_depth(l_z[..., None])[..., 0]  # [S, C0]
    slices = (lz_at @ p_xy.reshape(p_xy.shape[0], -1)).view(num, ry, rx)  # [S, Ry, Rx]
    left = torch.cat(
        [l_y.t()[None].expand(num, -1, -1), at_depth(p_yz).transpose(1, 2)], -1
    )  # [S, Ry, C1 + C2]
    right = torch.cat([at_depth(p_xz), l_x[None].expand(num, -1, -1)], 1)  # [S, C1 + C2, Rx]
    return torch.baddbmm(slices, left, right)  # [S, Ry, Rx]


def trilinear_gather(
    volume: torch.Tensor,  # [Rz, Ry, Rx]
    coords: torch.Tensor,  # [..., 3] (x, y, z) in [-1, 1]
) -> torch.Tensor:
    """Trilinear interpolation of a volume at coords (align_corners=True: vertices at the box
    corners) -> [...]: 8 scalar reads per point, a cheap backward. Coordinates are clamped
    into the box."""
    flat = coords.reshape(-1, 3)  # [P, 3]
    sizes = volume.shape[::-1]  # (Rx, Ry, Rz)
    size_t = flat.new_tensor([s - 1 for s in sizes])  # [3]
    pixel = (flat.clamp(-1.0, 1.0) + 1.0) * (0.5 * size_t)  # [P, 3]
    lower = torch.minimum(pixel.floor(), (size_t - 1).clamp(min=0))  # [P, 3]
    frac = pixel - lower  # [P, 3] in [0, 1]
    lower = lower.long()
    rx, ry = sizes[0], sizes[1]
    base = (lower[:, 2] * ry + lower[:, 1]) * rx + lower[:, 0]  # [P]
    step_x = 1 if sizes[0] > 1 else 0
    step_y = rx if sizes[1] > 1 else 0
    step_z = rx * ry if sizes[2] > 1 else 0
    offsets = torch.tensor(
        [
            dz * step_z + dy * step_y + dx * step_x
            for dz in (0, 1)
            for dy in (0, 1)
            for dx in (0, 1)
        ],
        device=flat.device,
    )  # [8]
    values = volume.reshape(-1)[base[:, None] + offsets]  # [P, 8]
    fx, fy, fz = frac.unbind(-1)  # [P] each
    wx = torch.stack([1.0 - fx, fx], -1)  # [P, 2]
    wy = torch.stack([1.0 - fy, fy], -1)
    wz = torch.stack([1.0 - fz, fz], -1)
    weights = (wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]).reshape(-1, 8)
    return torch.sum(values * weights, -1).view(coords.shape[:-1])  # [...]


# ----------------------------------------------------------------------------- batched sampling

FactorBatches = list[tuple[torch.Tensor, list[tuple[int, int]]]]


def stack_factors(tensors: list[torch.Tensor]) -> FactorBatches:
    """Arrange [1, C_m, H_m, W_m] tensors as grid_sample batches [N, g, H, W]: each tensor is
    split into channel groups of g = gcd(C_m) (a free view), and tensors of equal (H, W) share
    a batch (one copy of the smaller planes; the 48-channel xy plane is never copied).
    Returns [(batch, [(tensor index, groups), ...]), ...]."""
    group = math.gcd(*[t.shape[1] for t in tensors])
    by_shape: dict[tuple[int, int], list[int]] = {}
    for index, tensor in enumerate(tensors):
        by_shape.setdefault(tuple(tensor.shape[2:]), []).append(index)
    batches = []
    for (height, width), members in by_shape.items():
        parts = [tensors[i].view(-1, group, height, width) for i in members]
        batch = parts[0] if len(parts) == 1 else torch.cat(parts, 0)  # [N, g, H, W]
        batches.append((batch, [(i, tensors[i].shape[1] // group) for i in members]))
    return batches


def sample_stacked(batches: FactorBatches, coords: list[torch.Tensor]) -> torch.Tensor:
    """Sample stack_factors batches, tensor m at coords[m] [P, 2] in [-1, 1] (x -> W, y -> H),
    with one grid_sample call per batch -> [P, sum C_m] in the original tensor order. The CPU
    kernel threads over the channel groups of a batch."""
    outputs: dict[int, torch.Tensor] = {}
    for batch, members in batches:
        grid = torch.cat([coords[i][None].expand(groups, -1, -1) for i, groups in members], 0)
        out = F.grid_sample(batch, grid[:, :, None, :], mode="bilinear", align_corners=True)
        out = out.view(out.shape[0] * out.shape[1], -1)  # [N * g, P]
        start = 0
        for i, groups in members:
            size = groups * batch.shape[1]
            outputs[i] = out[start : start + size]  # [C_i, P]
            start += size
    return torch.cat([outputs[i] for i in range(len(outputs))], 0).t()  # [P, sum C]


# ----------------------------------------------------------------------------- baked appearance


def appearance_at_depths(
    planes: list[torch.Tensor],
    lines: list[torch.Tensor],
    basis: torch.Tensor,  # [A, C0 + C1 + C2] the appearance basis (no bias)
    z: torch.Tensor,  # [S] box z coordinates in [-1, 1]
    dtype: torch.dtype = torch.float32,
    block: int = 8,
) -> torch.Tensor:
    """The appearance features basis @ concat_m(P_m * L_m) on the z-slices z, at every (x, y)
    vertex: [S, Ry, Rx, A] (channels last), stored as `dtype` (computed in float32, `block`
    slices at a time). Bilinear reads of a slice are the field's own values: each mode is
    bilinear in (x, y) at a fixed z. Matrix products per slice: [Ry*Rx, C0] x [C0, A] for the
    xy mode, [Ry, C] x [C, Rx*A] for the others."""
    p_xy, p_xz, p_yz = (p[0] for p in planes)  # [C0, Ry, Rx] [C1, Rz, Rx] [C2, Rz, Ry]
    l_z, l_y, l_x = (line[0, :, :, 0] for line in lines)  # [C0, Rz] [C1, Ry] [C2, Rx]
    c0, c1, c2 = p_xy.shape[0], p_xz.shape[0], p_yz.shape[0]
    ry, rx = p_xy.shape[1], p_xy.shape[2]
    b0, b1, b2 = basis.split([c0, c1, c2], dim=1)  # [A, C_m]
    num, dim = z.shape[0], basis.shape[0]
    lz_at, pxz_at, pyz_at = (_at_depth(f, z) for f in (l_z[..., None], p_xz, p_yz))
    mode_xy = lz_at[:, :, 0, None] * b0.t()[None]  # [S, C0, A]
    plane = p_xy.reshape(c0, -1).t()  # [Ry * Rx, C0]
    mode_yz = (l_x[..., None] * b2.t()[:, None, :]).view(1, c2, rx * dim)  # [1, C2, Rx * A]
    table = plane.new_empty(num, ry, rx, dim, dtype=dtype)
    part = plane.new_empty(min(block, num), ry * rx, dim)  # float32 slices being summed
    for first in range(0, num, block):
        count = min(block, num - first)
        out = part[:count]
        for k in range(count):  # one product per slice: a batched one would copy the plane
            torch.mm(plane, mode_xy[first + k], out=out[k])
        mode_xz = pxz_at[first : first + count, ..., None] * b1.t()[None, :, None, :]
        out.view(count, ry, rx * dim).baddbmm_(
            l_y.t()[None].expand(count, -1, -1), mode_xz.view(count, c1, rx * dim)
        )
        out.view(count, ry, rx * dim).baddbmm_(
            pyz_at[first : first + count].transpose(1, 2), mode_yz.expand(count, -1, -1)
        )
        table[first : first + count] = out.view(count, ry, rx, dim)
    return table


def appearance_at_vertices(
    planes: list[torch.Tensor],
    lines: list[torch.Tensor],
    basis: torch.Tensor,  # [A, C0 + C1 + C2] the appearance basis (no bias)
    vertices: torch.Tensor,  # [N, 3] (x, y, z) vertex indices
    dtype: torch.dtype = torch.float32,
    block: int = 1 << 16,
) -> torch.Tensor:
    """The appearance features basis @ concat_m(P_m * L_m) at grid vertices [N, A], stored as
    `dtype` (computed in float32, `block` vertices at a time): each factor read at a vertex,
    no interpolation. A trilinear read of these values is the field's own appearance: each
    mode's product is bilinear in its plane's axes and linear in its line's, so multilinear in
    each grid cell."""
    columns = []  # per mode: plane texels [H * W, C] (rows contiguous), line texels [L, C]
    for mode in range(3):
        plane, line = planes[mode][0], lines[mode][0, :, :, 0]  # [C, H, W], [C, L]
        columns.append(
            (plane.reshape(plane.shape[0], -1).t().contiguous(), line.t(), plane.shape[2])
        )
    out = basis.new_empty(len(vertices), basis.shape[0], dtype=dtype)
    for first in range(0, len(vertices), block):
        v = vertices[first : first + block]
        parts = []
        for mode, (plane, line, width) in enumerate(columns):
            (a, b), c = PLANE_AXES[mode], LINE_AXES[mode]
            texel = v[:, b] * width + v[:, a]  # [n]
            parts.append(plane.index_select(0, texel) * line.index_select(0, v[:, c]))
        out[first : first + block] = torch.cat(parts, 1) @ basis.t()
    return out


def _at_depth(factor: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of factor [C, Rz, ...] along its depth axis at box z [S] ->
    [S, C, ...] (align_corners=True, z clamped into the box)."""
    depth = factor.shape[1]
    pixel = (z.clamp(-1.0, 1.0) + 1.0) * (0.5 * (depth - 1))  # [S]
    lower = torch.clamp(pixel.floor(), max=depth - 2).long()  # [S]
    frac = pixel - lower  # [S]
    shape = (1, -1) + (1,) * (factor.dim() - 2)
    mixed = factor[:, lower] * (1.0 - frac).view(shape) + factor[:, lower + 1] * frac.view(shape)
    return mixed.transpose(0, 1)


def _slice_texels(
    shape: torch.Size, xy: torch.Tensor, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For a slice table of `shape` [S, Ry, Rx, A]: the flat texel index [P] of each point's
    lower-left texel (x, y clamped into the box, align_corners=True) and its bilinear fraction
    [P, 2] (x, y) in [0, 1]."""
    _, ry, rx, _ = shape
    size = xy.new_tensor([rx - 1, ry - 1])  # [2]
    pixel = (xy.clamp(-1.0, 1.0) + 1.0) * (0.5 * size)  # [P, 2]
    lower = torch.minimum(pixel.floor(), size - 1)  # [P, 2]
    frac = pixel - lower  # [P, 2]
    lower = lower.long()
    return (index * ry + lower[:, 1]) * rx + lower[:, 0], frac


def read_slices(
    table: torch.Tensor,  # [S, Ry, Rx, A] from appearance_at_depths
    xy: torch.Tensor,  # [P, 2] box x, y
    index: torch.Tensor,  # [P] slice of each point
) -> torch.Tensor:
    """Bilinear reads of the slice table (align_corners=True, x, y clamped into the box):
    [P, A], two reads of 2A features per point."""
    num, ry, rx, dim = table.shape
    base, frac = _slice_texels(table.shape, xy, index)  # [P], [P, 2]
    # rows (x, y) and (x + 1, y) are side by side: one read of 2A features for each pair
    flat = table.view(-1)
    pairs = flat.as_strided((flat.numel() // dim - 1, 2 * dim), (dim, 1))
    rows = pairs.index_select(0, torch.cat([base, base + rx])).view(2, -1, 2, dim)
    rows = rows.to(xy.dtype)  # a half-precision table: read in half, mixed in float32
    fx, fy = frac[:, 0:1], frac[:, 1:2]  # [P, 1]
    top = torch.lerp(rows[0, :, 0], rows[0, :, 1], fx)  # [P, A]
    bottom = torch.lerp(rows[1, :, 0], rows[1, :, 1], fx)
    return torch.lerp(top, bottom, fy)


def gather_slices(
    table: torch.Tensor,  # [S, Ry, Rx, A] from appearance_at_depths
    xy: torch.Tensor,  # [P, 2] box x, y
    index: torch.Tensor,  # [P] slice of each point
) -> torch.Tensor:
    """`read_slices` in one embedding_bag call (the 4 texels and their bilinear weights as a
    bag, summed by one fused kernel): [P, A] in the table's dtype (weights and result rounded
    to it: 11 significant bits for half)."""
    num, ry, rx, dim = table.shape
    base, frac = _slice_texels(table.shape, xy, index)  # [P], [P, 2]
    texels = base[:, None] + base.new_tensor([0, 1, rx, rx + 1])  # [P, 4]
    fx, fy = frac[:, 0:1], frac[:, 1:2]  # [P, 1]
    wx = torch.cat([1.0 - fx, fx], 1)  # [P, 2]
    weights = torch.cat([wx * (1.0 - fy), wx * fy], 1)  # [P, 4]
    rows = table.view(num * ry * rx, dim)
    return F.embedding_bag(texels, rows, per_sample_weights=weights.to(table.dtype), mode="sum")
