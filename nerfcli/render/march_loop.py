"""The compiled march of nerfcli.render.compiled: numba functions, imported only where numba is
installed and a render needs them (`compiled._loop`). The module docstring of compiled.py
says what the loop computes; the helpers here are inlined into `march_rays` in numba's IR (no
calls in the loop). Compiled on first use, a few seconds, then cached on disk."""

from __future__ import annotations

import math

import numba
import numpy as np

from nerfcli.render.compiled import OCCUPIED
from nerfcli.render.composite import LAST_DELTA
from nerfcli.render.packed import TAU_CAP

_jit = numba.njit(nogil=True, cache=True, error_model="numpy")
_inline = numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")


@_inline
def _reach(sx, sy, sz, cx, cy, cz):
    """The depth a ray covers per cell on its fastest axis, a hair less, from its box-coords
    speed (sx, sy, sz) per unit t: exact in a box scene, where grid coords are affine in t."""
    fastest = max(abs(sx) * cx, abs(sy) * cy, abs(sz) * cz) * 0.5
    return (1.0 - 1e-4) / max(fastest, 1e-30)


@_inline
def _norm(gx, gy, gz, contraction):
    """|g| in the contraction's norm (1: l2, 2: linf)."""
    if contraction == 1:
        return math.sqrt(gx * gx + gy * gy + gz * gz)
    return max(abs(gx), abs(gy), abs(gz))


@_inline
def _contract_half(gx, gy, gz, norm):
    """contract(g) / 2 of box coords g of norm `norm` (nerfcli.render.contraction)."""
    n = max(norm, 1.0)
    factor = (2.0 * n - 1.0) / (2.0 * n * n)
    return gx * factor, gy * factor, gz * factor


@_inline
def _density(volume, gx, gy, gz, activation, shift, density_scale):
    """sigma at grid coords inside the grid: a trilinear read of the density feature (grid_sample
    with align_corners=True), as three rounds of linear interpolation, activated."""
    vz, vy, vx = volume.shape
    px, py, pz = (
        (gx + 1.0) * 0.5 * (vx - 1),
        (gy + 1.0) * 0.5 * (vy - 1),
        (gz + 1.0) * 0.5 * (vz - 1),
    )
    # the cell's lowest corner, clamped so that its far corners exist: a point on the grid's
    # last face reads it with weight 1 (the loop reads only points inside the grid)
    x0 = min(max(math.floor(px), 0), vx - 2)
    y0 = min(max(math.floor(py), 0), vy - 2)
    z0 = min(max(math.floor(pz), 0), vz - 2)
    fx, fy, fz = px - x0, py - y0, pz - z0
    a00 = volume[z0, y0, x0] + fx * (volume[z0, y0, x0 + 1] - volume[z0, y0, x0])
    a01 = volume[z0, y0 + 1, x0] + fx * (volume[z0, y0 + 1, x0 + 1] - volume[z0, y0 + 1, x0])
    a10 = volume[z0 + 1, y0, x0] + fx * (volume[z0 + 1, y0, x0 + 1] - volume[z0 + 1, y0, x0])
    a11 = volume[z0 + 1, y0 + 1, x0] + fx * (
        volume[z0 + 1, y0 + 1, x0 + 1] - volume[z0 + 1, y0 + 1, x0]
    )
    b0, b1 = a00 + fy * (a01 - a00), a10 + fy * (a11 - a10)
    feature = b0 + fz * (b1 - b0)
    if activation == 0:
        return density_scale * max(feature, 0.0)
    value = feature + shift
    return density_scale * (value if value > 20.0 else math.log1p(math.exp(value)))


@_inline
def _cell(gx, gy, gz, cx, cy, cz):
    """The flat index of the cell of grid coords: floor((c + 1) / 2 * cells), clamped."""
    ix = min(max(math.floor((gx + 1.0) * 0.5 * cx), 0), cx - 1)
    iy = min(max(math.floor((gy + 1.0) * 0.5 * cy), 0), cy - 1)
    iz = min(max(math.floor((gz + 1.0) * 0.5 * cz), 0), cz - 1)
    return (iz * cy + iy) * cx + ix


@_inline
def _keep(row, s, sigma, norm, gx, gy, gz, kept, kept_t, kept_tau, kept_g):
    """Sample s of a row, of density sigma, as the ray's kept sample number `kept`: its depth,
    optical depth (sigma * gap to the next sample * |d|, capped) and grid coords; returns the
    optical depth."""
    t = row[s]
    gap = row[s + 1] - t if s < len(row) - 1 else LAST_DELTA
    tau = min(sigma * gap * norm, TAU_CAP)
    kept_t[kept], kept_tau[kept] = t, tau
    kept_g[kept, 0], kept_g[kept, 1], kept_g[kept, 2] = gx, gy, gz
    return tau


@_inline
def _walk_box(row, origin, direction, grid, kept_t, kept_tau, kept_g, stop_depth):
    """The samples of one ray (depths row [S]) in a box scene's occupied cells up to its
    termination: their depths, optical depths and grid coords into kept_t, kept_tau, kept_g;
    returns how many, and how many samples were given a density (those of density 0 are
    read, not kept: their weight is 0). A free cell's radius skips the samples it clears."""
    volume, cells, lo, scale, lo32, scale32, contraction, activation, shift, dscale = grid
    vz, vy, vx = volume.shape
    cz, cy, cx = vz - 1, vy - 1, vx - 1
    ox, oy, oz = origin[0], origin[1], origin[2]
    dx, dy, dz = direction[0], direction[1], direction[2]
    norm = math.sqrt(dx * dx + dy * dy + dz * dz)
    sx, sy, sz = dx * scale[0], dy * scale[1], dz * scale[2]  # box coords per unit t
    reach = _reach(sx, sy, sz, cx, cy, cz)
    one32 = np.float32(1.0)
    num_samples, kept, optical, s, reads = len(row), 0, 0.0, 0, 0
    while s < num_samples:
        t = row[s]
        # normalize(o + d t) in float32, as the plain path computes it: a sample on the box's
        # face keeps its bits, and stays inside
        gx32 = (ox + dx * t - lo32[0]) * scale32[0] - one32
        gy32 = (oy + dy * t - lo32[1]) * scale32[1] - one32
        gz32 = (oz + dz * t - lo32[2]) * scale32[2] - one32
        inside = abs(gx32) <= one32 and abs(gy32) <= one32 and abs(gz32) <= one32
        gx, gy, gz = float(gx32), float(gy32), float(gz32)
        code = cells[_cell(gx, gy, gz, cx, cy, cz)]
        if code != OCCUPIED:
            # to the first sample at or past t + r * reach (r = 0: the next one): a linear
            # scan (a skip passes a few samples; a bisection cost more)
            target = t + code * reach
            s += 1
            while s < num_samples and row[s] < target:
                s += 1
            continue
        if optical >= stop_depth:
            break
        reads += 1
        sigma = _density(volume, gx, gy, gz, activation, shift, dscale) if inside else 0.0
        if sigma > 0.0:  # a sample of density 0 has weight 0: the composite is the same
            optical += _keep(row, s, sigma, norm, gx, gy, gz, kept, kept_t, kept_tau, kept_g)
            kept += 1
        s += 1
    return kept, reads


BLOCK = 16  # samples a block of _walk_contracted (8: 10 % slower on a phone capture; 32: same)


@_inline
def _block_pass(row, start, size, origin_box, speed_box, contraction, cells_xyz, block, cell_of):
    """The grid coords (block[0:3]) and flat cells (cell_of) of samples start .. start + size
    of a contracted ray, in one loop without branches that the compiler vectorizes."""
    bx, by, bz = origin_box
    sx, sy, sz = speed_box
    cx, cy, cz = cells_xyz
    for j in range(size):
        t = row[start + j]
        ex, ey, ez = bx + sx * t, by + sy * t, bz + sz * t  # box coords
        gx, gy, gz = _contract_half(ex, ey, ez, _norm(ex, ey, ez, contraction))
        block[0, j], block[1, j], block[2, j] = gx, gy, gz
        cell_of[j] = _cell(gx, gy, gz, cx, cy, cz)


@_inline
def _walk_contracted(
    row, origin, direction, grid, kept_t, kept_tau, kept_g, stop_depth, block, cell_of
):
    """_walk_box for a contracted scene, in blocks of samples: first each block's grid coords
    and cells (_block_pass), then its samples in occupied cells in turn. No skips: the
    contracted background is mostly occupied, and a free radius seldom reached past the next
    sample (skipping saved 2 % of the loop on a phone capture; the vectorized blocks save
    35 %). Scratch: block [3, BLOCK] float64, cell_of [BLOCK] int64 (a float cell index
    converted back cost 3-7 % of the loop)."""
    volume, cells, lo, scale, lo32, scale32, contraction, activation, shift, dscale = grid
    vz, vy, vx = volume.shape
    cells_xyz = (vx - 1, vy - 1, vz - 1)
    ox, oy, oz = origin[0], origin[1], origin[2]
    dx, dy, dz = direction[0], direction[1], direction[2]
    norm = math.sqrt(dx * dx + dy * dy + dz * dz)
    origin_box = (
        (ox - lo[0]) * scale[0] - 1.0,
        (oy - lo[1]) * scale[1] - 1.0,
        (oz - lo[2]) * scale[2] - 1.0,
    )
    speed_box = (dx * scale[0], dy * scale[1], dz * scale[2])  # box coords per unit t
    num_samples, kept, optical, reads = len(row), 0, 0.0, 0
    for start in range(0, num_samples, BLOCK):
        size = min(BLOCK, num_samples - start)
        # a whole block with its length known to the compiler: no remainder loop (3-7 %)
        if size == BLOCK:
            _block_pass(row, start, BLOCK, origin_box, speed_box, contraction, cells_xyz, block, cell_of)  # fmt: skip
        else:
            _block_pass(row, start, size, origin_box, speed_box, contraction, cells_xyz, block, cell_of)  # fmt: skip
        for j in range(size):
            if cells[cell_of[j]] != OCCUPIED:
                continue
            if optical >= stop_depth:
                return kept, reads
            gx, gy, gz = block[0, j], block[1, j], block[2, j]
            sigma = _density(volume, gx, gy, gz, activation, shift, dscale)
            reads += 1
            if sigma <= 0.0:  # weight 0: the composite is the same without it
                continue
            optical += _keep(
                row, start + j, sigma, norm, gx, gy, gz, kept, kept_t, kept_tau, kept_g
            )
            kept += 1
    return kept, reads


@_inline
def _composite(kept, kept_t, kept_tau, kept_w, kept_cdf, chosen, group_weights, r):
    """One ray's composite of its kept samples (`composite_packed`): (opacity, depth), its
    group weights into group_weights[r], and its K colour quantiles' samples into chosen."""
    # transmittance before and after each sample: one exp a sample (after_i is before_i+1)
    optical, trans_before, total_w, depth_sum = 0.0, 1.0, np.float32(0.0), np.float32(0.0)
    for i in range(kept):
        optical += kept_tau[i]
        trans_after = math.exp(-optical)
        w = np.float32(trans_before - trans_after)
        kept_w[i], kept_cdf[i] = w, 1.0 - trans_after
        total_w += w
        depth_sum += w * kept_t[i]
        trans_before = trans_after
    if kept == 0 or total_w <= 0.0:
        return total_w, depth_sum
    count = len(chosen)
    total = max(total_w, np.float32(1e-10))
    for i in range(kept):  # groups: each sample's mass midpoint in K parts of the opacity
        middle = (np.float32(kept_cdf[i]) - np.float32(0.5) * kept_w[i]) / total
        group_weights[r, min(max(int(middle * count), 0), count - 1)] += kept_w[i]
    i = 0
    for k in range(count):  # quantile k: the first sample whose cdf reaches (k + 0.5) / K
        target = (k + 0.5) / count * total
        while i < kept - 1 and kept_cdf[i] < target:
            i += 1
        chosen[k] = i
    return total_w, depth_sum


@_inline
def _fill_depths(buffer, mode, p, q, c1, c2, inner, near):
    """One ray's depths into buffer, in float32 as the samplers compute them (the same bits);
    returns the buffer."""
    if mode == 1:  # stratified_samples: near * (1 - u) + far * u
        for i in range(len(buffer)):
            buffer[i] = p * c1[i] + q * c2[i]
        return buffer
    for i in range(inner):  # unbounded_samples: near + (t_exit - near) * s, then t_exit / (1 - s)
        buffer[i] = near + q * c1[i]
    for i in range(len(buffer) - inner):
        buffer[inner + i] = p / c2[i]
    return buffer


def march_rays(
    origins,  # [R, 3] float32
    directions,  # [R, 3] float32
    mode,  # depths: 0 t_vals[r]; 1 p[r] * c1[s] + q[r] * c2[s] (stratified_samples);
    # 2 near + q[r] * c1[s] for s < inner, then p[r] / c2[s - inner] (unbounded_samples)
    t_vals,  # [R, S] float32 (mode 0; else [0, S])
    p,  # [R] float32
    q,  # [R] float32
    c1,  # [S] or [inner] float32
    c2,  # [S] or [S - inner] float32
    inner,
    near,
    grid,  # (volume, cells, lo, scale, lo32, scale32, contraction, activation, shift, scale)
    stop_depth,
    opacity,  # out [R] float32
    depth,  # out [R] float32
    group_weights,  # out [R, K] float32
    source,  # out [R * K] int64: the pick of each quantile (-1: none)
    pick_ray,  # out [R * K] int64
    pick_coords,  # out [R * K, 3] float32: grid coords of each pick
):
    """Every ray's march and composite (compiled.py's module docstring); one pick per distinct
    quantile sample of a ray with opacity. Returns (samples given density, picks). A box scene
    and a contracted one each get their own compiled loop: with both walks inlined into one,
    the box walk ran 10 % slower."""
    march = _march_box if grid[6] == 0 else _march_contracted
    return march(
        origins, directions, mode, t_vals, p, q, c1, c2, inner, np.float32(near), grid,
        stop_depth, opacity, depth, group_weights, source, pick_ray, pick_coords,
    )  # fmt: skip


# Two loops, one per walk, each with the composite and picks written out in it: the box loop
# ran 10 % slower with both walks in one loop, 15 % with its scratch and outputs passed as
# tuples, and 10 % with the composite and picks as an inlined helper (lego, 1 thread).
@_jit
def _march_box(
    origins, directions, mode, t_vals, p, q, c1, c2, inner, near, grid,
    stop_depth, opacity, depth, group_weights, source, pick_ray, pick_coords,
):  # fmt: skip
    num_samples, count = t_vals.shape[1], group_weights.shape[1]
    buffer = np.empty(num_samples, np.float32)  # the ray's depths (modes 1, 2)
    kept_t, kept_w = np.empty(num_samples, np.float32), np.empty(num_samples, np.float32)
    kept_tau, kept_cdf = np.empty(num_samples, np.float64), np.empty(num_samples, np.float64)
    kept_g, chosen = np.empty((num_samples, 3), np.float32), np.empty(count, np.int64)
    read, picks = 0, 0
    for r in range(len(origins)):
        if mode == 0:
            row = t_vals[r]
        else:
            row = _fill_depths(buffer, mode, p[r], q[r], c1, c2, inner, near)
        kept, reads = _walk_box(
            row, origins[r], directions[r], grid, kept_t, kept_tau, kept_g, stop_depth
        )
        read += reads
        opacity[r], depth[r] = _composite(
            kept, kept_t, kept_tau, kept_w, kept_cdf, chosen, group_weights, r
        )
        if kept == 0 or opacity[r] <= 0.0:
            continue
        for k in range(count):
            if k == 0 or chosen[k] != chosen[k - 1]:
                pick_ray[picks] = r
                pick_coords[picks, 0] = kept_g[chosen[k], 0]
                pick_coords[picks, 1] = kept_g[chosen[k], 1]
                pick_coords[picks, 2] = kept_g[chosen[k], 2]
                picks += 1
            source[r * count + k] = picks - 1
    return read, picks


@_jit
def _march_contracted(
    origins, directions, mode, t_vals, p, q, c1, c2, inner, near, grid,
    stop_depth, opacity, depth, group_weights, source, pick_ray, pick_coords,
):  # fmt: skip
    num_samples, count = t_vals.shape[1], group_weights.shape[1]
    buffer = np.empty(num_samples, np.float32)  # the ray's depths (modes 1, 2)
    kept_t, kept_w = np.empty(num_samples, np.float32), np.empty(num_samples, np.float32)
    kept_tau, kept_cdf = np.empty(num_samples, np.float64), np.empty(num_samples, np.float64)
    kept_g, chosen = np.empty((num_samples, 3), np.float32), np.empty(count, np.int64)
    block, cell_of = np.empty((3, BLOCK), np.float64), np.empty(BLOCK, np.int64)
    read, picks = 0, 0
    for r in range(len(origins)):
        if mode == 0:
            row = t_vals[r]
        else:
            row = _fill_depths(buffer, mode, p[r], q[r], c1, c2, inner, near)
        kept, reads = _walk_contracted(
            row,
            origins[r],
            directions[r],
            grid,
            kept_t,
            kept_tau,
            kept_g,
            stop_depth,
            block,
            cell_of,
        )
        read += reads
        opacity[r], depth[r] = _composite(
            kept, kept_t, kept_tau, kept_w, kept_cdf, chosen, group_weights, r
        )
        if kept == 0 or opacity[r] <= 0.0:
            continue
        for k in range(count):
            if k == 0 or chosen[k] != chosen[k - 1]:
                pick_ray[picks] = r
                pick_coords[picks, 0] = kept_g[chosen[k], 0]
                pick_coords[picks, 1] = kept_g[chosen[k], 1]
                pick_coords[picks, 2] = kept_g[chosen[k], 2]
                picks += 1
            source[r * count + k] = picks - 1
    return read, picks


@_jit
def blend(group_weights, source, colours, rgb):
    """rgb [R, 3] (zeros in) += sum_k group_weights[r, k] * colours[source[r * K + k]] of
    march_rays' picks' colours [P, 3] (a quantile with no pick, source -1, adds nothing)."""
    count = group_weights.shape[1]
    for r in range(len(rgb)):
        for k in range(count):
            pick = source[r * count + k]
            if pick >= 0:
                for channel in range(3):
                    rgb[r, channel] += group_weights[r, k] * colours[pick, channel]


@_jit
def trilinear_texels(coords, row_of, vz, vy, vx, absent, texels, weights, missing):
    """For grid coords [P, 3] (x, y, z; clamped into the grid) the rows [P, 8] of a sparse
    vertex table (row_of [Vz * Vy * Vx]: a vertex's row, `absent` where it has none) at the 8
    corners of each point's cell (z, then y, then x), their trilinear weights [P, 8], and
    whether a corner with weight > 0 has no row [P] (AppearanceVertices.read's, in one pass)."""
    for p in range(len(coords)):
        gx = min(max(coords[p, 0], -1.0), 1.0)
        gy = min(max(coords[p, 1], -1.0), 1.0)
        gz = min(max(coords[p, 2], -1.0), 1.0)
        px, py, pz = (
            (gx + 1.0) * 0.5 * (vx - 1),
            (gy + 1.0) * 0.5 * (vy - 1),
            (gz + 1.0) * 0.5 * (vz - 1),
        )
        x0 = min(math.floor(px), vx - 2)
        y0 = min(math.floor(py), vy - 2)
        z0 = min(math.floor(pz), vz - 2)
        fx, fy, fz = px - x0, py - y0, pz - z0
        base = (z0 * vy + y0) * vx + x0
        missing[p] = False
        corner = 0
        for dz in range(2):
            wz = fz if dz == 1 else 1.0 - fz
            for dy in range(2):
                wy = fy if dy == 1 else 1.0 - fy
                for dx in range(2):
                    wx = fx if dx == 1 else 1.0 - fx
                    row = row_of[base + (dz * vy + dy) * vx + dx]
                    weight = wz * wy * wx
                    texels[p, corner] = row
                    weights[p, corner] = weight
                    if row == absent and weight > 0.0:
                        missing[p] = True
                    corner += 1


@_jit
def rays_meeting(origins, directions, near, far, box, cells, kx, ky, kz, per_unit, spacing, out):
    """nerfcli.render.ray_filter.rays_meeting for rays [R]: each ray's segment in the box
    (box [2, 3]: lo, hi; the slab method, clamped to near, far, as samplers.box_interval, in
    float64) sampled at most `spacing` apart (both ends included), True at the first sample
    in a set coarse cell (cells flat [Kz * Ky * Kx]; per_unit: coarse cells per unit length
    on each axis)."""
    for r in range(len(origins)):
        out[r] = False
        t_in, t_out = near, far
        for axis in range(3):
            o, d = float(origins[r, axis]), float(directions[r, axis])
            if abs(d) < 1e-9:
                d = 1e-9
            a, b = (box[0, axis] - o) / d, (box[1, axis] - o) / d
            t_in, t_out = max(t_in, min(a, b)), min(t_out, max(a, b))
        if t_out <= t_in:  # box_interval's miss: samples at near, outside the box
            continue
        ox, oy, oz = origins[r, 0], origins[r, 1], origins[r, 2]
        dx, dy, dz = directions[r, 0], directions[r, 1], directions[r, 2]
        span = t_out - t_in
        count = int(math.ceil(span * math.sqrt(dx * dx + dy * dy + dz * dz) / spacing))
        for k in range(count + 1):
            t = t_in + (span * k / count if count > 0 else 0.0)
            ix = min(max(math.floor((ox + dx * t - box[0, 0]) * per_unit[0]), 0), kx - 1)
            iy = min(max(math.floor((oy + dy * t - box[0, 1]) * per_unit[1]), 0), ky - 1)
            iz = min(max(math.floor((oz + dz * t - box[0, 2]) * per_unit[2]), 0), kz - 1)
            if cells[(iz * ky + iy) * kx + ix]:
                out[r] = True
                break
