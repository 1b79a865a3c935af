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
    depth = l_z.shape[1]
    pixel = (z.clamp(-1.0, 1.0) + 1.0) * (0.5 * (depth - 1))  # [S]
    lower = torch.clamp(pixel.floor(), max=depth - 2).long()  # [S]
    frac = pixel - lower  # [S]
    upper = lower + 1

    def at_depth(factor: torch.Tensor) -> torch.Tensor:  # [C, Rz, ...] -> [S, C, ...]
        shape = (1, -1) + (1,) * (factor.dim() - 2)  # frac along the depth axis
        mixed = factor[:, lower] * (1.0 - frac).view(shape) + factor[:, upper] * frac.view(shape)
        return mixed.transpose(0, 1)

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
