"""The no-grad render of NDC rays (eval, previews, videos): the image `RenderPolicy.render`
makes, in fewer passes over the samples. Its plain counterpart is `RenderPolicy.render` itself
(the path training takes); tests/unit/test_tensorf_fast.py compares the two.

NDC rays share the z of every sample, so the density of sample s is a bilinear read of the
cached z-slice s (`TensorfField.slice_stack`), as in training. Then, per ray [R, S]:
- optical depth c_s = sum_{j <= s} sigma_j delta_j: sigma delta in grid_sample's [S, R] layout,
  one blocked transpose, one cumsum; transmittance T_s = exp(-c_s), weights w_s = T_{s-1} - T_s
  and cdf_s = 1 - T_s: `weights_from_alpha` without the per-sample alpha, the cumulative
  product and a second cumulative sum;
- the colour quantiles and the group weights of `_colour_by_quantiles` / `composite_grouped`
  by binary search on each ray's cdf (the groups are runs of samples), one colour per distinct
  sample of a ray (neighbouring equal quantiles merged, no sort);
- colour from the field's baked appearance slices once they pay (`TensorfField.
  appearance_table`, half precision), read by one embedding_bag call (`gather_slices`: the 4
  texels and their bilinear weights as a bag) instead of 6 grid_sample reads of 72 channels
  and the basis product; the decoder in blocks, in bfloat16 where the CPU multiplies it
  natively (`decode`).
Measured (fern, 448 x 448 x 128 grid, 504 x 378 spiral frame, 1 thread, busy 2-core Zen 4,
each chunk with the commit before and this in turn, CPU seconds a frame): optical depth 0.215
-> 0.173 (the [S, R] layout), compositing and colour 0.605 -> 0.381 (no sort 0.64 -> 0.47,
bfloat16 decoder with fused ReLU, the embedding_bag read); held-out PSNR 24.1131 dB plain,
24.1130 this path with the table (24.1131 with a float32 decoder).
Measured and left out: early ray termination and skipping empty slices per chunk of rays
(per chunk of 8192 rays the samples from the first non-empty slice to the last one with
T > 1e-4 of any ray are 98% of all, 93% per 512 rays, 70% per 64: floaters sit in the
nearest slices everywhere and some ray of every chunk stays unsaturated; per ray, 52% of the
samples lie before the first density and 3.7% after T < 1e-4, but a ragged per-ray render
cost more than the reads it saved, 1.00 s against 0.87 s a frame); a torch.compile of the
per-sample chain (4.4 against 7.8 ms a chunk after a 99 s compile).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from nerfcli.data.rays import Rays
from nerfcli.models.encoding import positional_encoding
from nerfcli.models.tensorf.factors import gather_slices
from nerfcli.models.tensorf.field import TensorfField
from nerfcli.render.composite import LAST_DELTA, Composite

# Colour decoding (decode): rows a block, and the multiple the rows are padded to.
DECODER_ROWS = 4096
DECODER_PAD = 1024


def _box_xy(field: TensorfField, rays: Rays) -> tuple[torch.Tensor, torch.Tensor]:
    """Box x, y at t = 0 [R, 2] and their change per unit t [R, 2] (as density_slices)."""
    lo, hi = field.aabb[0], field.aabb[1]
    scale = 2.0 / (hi - lo)  # [3]
    start = (rays.origins[:, :2] - lo[:2]) * scale[:2] - 1.0  # [R, 2]
    return start, rays.directions[:, :2] * scale[:2]


def optical_depth(field: TensorfField, rays: Rays, t_row: torch.Tensor) -> torch.Tensor:
    """Cumulative optical depth c [R, S] = sum_{j <= s} sigma_j delta_j along rays [R]
    sharing depths t_row [S]; sigma as `TensorfField.density_slices` (0 outside the box)."""
    z = field.slice_depths(rays, t_row)  # [S]
    slices = field.slice_stack(z)  # [S, Ry, Rx] density feature
    start, step = _box_xy(field, rays)  # [R, 2]
    gaps = torch.cat([t_row[1:] - t_row[:-1], t_row.new_tensor([LAST_DELTA])])  # [S]
    gaps = gaps * (z.abs() <= 1.0)  # [S]; outside the box in z: no density
    grid = torch.addcmul(start[None], t_row[:, None, None], step[None])  # [S, R, 2]
    feature = F.grid_sample(slices[:, None], grid[:, None], align_corners=True)
    feature = feature.view(t_row.shape[0], -1)  # [S, R]
    if not _segments_inside(start, step, t_row):  # outside the box: the lowest feature, 0 density
        outside = (grid.abs() > 1.0).any(-1)  # [S, R]
        feature = feature.masked_fill(outside, torch.finfo(feature.dtype).min)
    # sigma * delta in this [S, R] layout (contiguous passes), one blocked transpose to
    # [R, S], the cumulative sum along each ray (torch.cumsum over dim 0 is 7x slower)
    if field.cfg.density_activation == "relu":  # relu(f) * gap = relu(f * gap), gap >= 0
        tau = feature.mul_((gaps * field.cfg.distance_scale)[:, None]).clamp_(min=0.0)
    else:
        tau = field.activate_density(feature).mul_(gaps[:, None])
    tau.mul_(torch.linalg.norm(rays.directions, dim=-1)[None])  # [S, R]
    optical = tau.new_empty(len(rays), t_row.shape[0]).copy_(tau.t())  # [R, S]
    return torch.cumsum(optical, 1, out=optical)


def _segments_inside(start: torch.Tensor, step: torch.Tensor, t_row: torch.Tensor) -> bool:
    """True when every ray's samples lie inside the box in x, y: both ends of each segment
    do (it is convex), so no sample needs the inside test."""
    ends = torch.stack([start + t_row[0] * step, start + t_row[-1] * step])  # [2, R, 2]
    return bool((ends.abs() <= 1.0).all())


def composite_quantiles(
    optical: torch.Tensor,  # [R, S] cumulative optical depth (overwritten)
    t_vals: torch.Tensor,  # [S] depths shared by the rays (NDC), or [R, S] per ray
    count: int,  # K colour quantiles
    white_bkgd: bool,
    colour_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],  # (ray [U], sample [U])
) -> tuple[Composite, int]:
    """The composite of `_colour_by_quantiles` + `composite_grouped` from the optical depth,
    colour_fn(ray, sample) -> rgb [U, 3] evaluated once per distinct quantile sample of a ray,
    and how many colours were evaluated."""
    num_rays, num_samples = optical.shape
    # minus the transmittance before each sample and after it: ntrans[:, s + 1] = -T_s
    ntrans = torch.empty(num_rays, num_samples + 1, dtype=optical.dtype, device=optical.device)
    ntrans[:, 0] = -1.0
    torch.exp(optical.neg_(), out=ntrans[:, 1:])
    ntrans[:, 1:].neg_()
    weights = ntrans[:, 1:] - ntrans[:, :-1]  # [R, S] T_{s-1} - T_s
    opacity = ntrans[:, -1] + 1.0  # [R]
    total = opacity.clamp(min=1e-10)[:, None]  # [R, 1]
    fractions = torch.arange(count + 1, dtype=optical.dtype, device=optical.device) / count
    # colour quantile k sits at the first sample whose cdf 1 - T_s reaches (k + 0.5) / K
    targets = (fractions[:-1] + 0.5 / count)[None] * total - 1.0  # [R, K]
    chosen = torch.searchsorted(ntrans, targets.contiguous()) - 1  # [R, K]
    chosen = chosen.clamp(0, num_samples - 1)
    # group k: the samples whose mass midpoint cdf_s - w_s / 2 = 1 + (ntrans_s + ntrans_s+1) / 2
    # lies in [k / K, (k + 1) / K) of the total, a run of samples [b_k, b_k+1)
    midpoints = ntrans[:, 1:] + ntrans[:, :-1]  # [R, S] ascending
    bounds = 2.0 * (fractions[1:-1][None] * total - 1.0)  # [R, K - 1]
    inner = torch.searchsorted(midpoints, bounds.contiguous())  # [R, K - 1]
    edges = torch.cat(
        [inner.new_zeros(num_rays, 1), inner, inner.new_full((num_rays, 1), num_samples)], 1
    )  # [R, K + 1]
    at_edges = torch.gather(ntrans, 1, edges)  # [R, K + 1] -T before each run
    group_weights = at_edges[:, 1:] - at_edges[:, :-1]  # [R, K]
    # one colour per distinct sample of a ray: chosen is non-decreasing along k, so equal
    # quantiles are neighbours (no sort); colours in ray order, one run per ray
    first = torch.ones_like(chosen, dtype=torch.bool)  # [R, K]
    torch.ne(chosen[:, 1:], chosen[:, :-1], out=first[:, 1:])
    first = first.view(-1)  # [R * K]
    picked = torch.nonzero(first).squeeze(1)  # [U]
    inverse = torch.cumsum(first, 0) - 1  # [R * K] -> [U]
    ray_index = torch.div(picked, count, rounding_mode="floor")  # [U]
    colour = colour_fn(ray_index, chosen.view(-1)[picked])  # [U, 3]
    colours = colour.index_select(0, inverse).view(num_rays, count, 3)  # [R, K, 3]
    rgb = torch.sum(group_weights[..., None] * colours, 1)
    if t_vals.dim() == 1:
        depth = weights @ t_vals  # [R]
    else:
        depth = torch.linalg.vecdot(weights, t_vals)  # [R]
    disparity = 1.0 / torch.clamp(depth / torch.clamp(opacity, min=1e-10), min=1e-10)
    if white_bkgd:
        rgb = rgb + (1.0 - opacity[:, None])
    return Composite(rgb, depth, disparity, opacity, weights), len(picked)


def colour_at(
    field: TensorfField,
    rays: Rays,  # [R]
    t_row: torch.Tensor,  # [S] depths shared by the rays
    ray_index: torch.Tensor,  # [P]
    sample: torch.Tensor,  # [P]
) -> torch.Tensor:
    """Colour [P, 3] of samples (ray_index, sample): the appearance from the baked slices once
    the field has them (`gather_slices`: one embedding_bag read of 4 x A half features),
    before that from the factors; the decoder by `decode`."""
    z = field.slice_depths(rays, t_row)  # [S]
    start, step = _box_xy(field, rays)  # [R, 2]
    per_ray = torch.cat([start, step, rays.viewdirs], 1).index_select(0, ray_index)  # [P, 7]
    xy = torch.addcmul(per_ray[:, :2], t_row[sample][:, None], per_ray[:, 2:4])  # [P, 2]
    table = field.appearance_table(z, len(rays))
    if table is None:
        features = field.appearance(torch.cat([xy, z[sample][:, None]], 1))  # [P, A]
    else:
        features = gather_slices(table, xy, sample).float()  # [P, A]
    return decode(field, decoder_parts(field.decoder, features, per_ray[:, 4:]))


def decoder_parts(decoder, features: torch.Tensor, viewdirs: torch.Tensor) -> list[torch.Tensor]:
    """The column blocks of the decoder's input rows [P, C] (ColourDecoder.forward's
    concatenation [features, viewdirs, PE(features), PE(viewdirs)]), not concatenated:
    decode_rows writes them into its padded block directly."""
    parts = [features, viewdirs]  # [P, A], [P, 3]
    if decoder.feature_pe > 0:
        parts.append(positional_encoding(features, decoder.feature_pe, include_input=False))
    if decoder.view_pe > 0:
        parts.append(positional_encoding(viewdirs, decoder.view_pe, include_input=False))
    return parts


def decode(field: TensorfField, inputs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """The field's decoder on its input rows [P, C] or their column blocks (decoder_parts)
    -> rgb [P, 3] float32,
    in blocks of DECODER_ROWS rows (activations in cache; the
    last block padded to a multiple of DECODER_PAD: oneDNN builds its kernels once per shape,
    ~3 ms each, more than a block's product) and in bfloat16 where the CPU multiplies it
    natively (AVX512-BF16: ~2.3x faster than float32 here; the PSNR change is in
    bench/README.md)."""
    first = inputs if isinstance(inputs, torch.Tensor) else inputs[0]
    dtype = decoder_dtype(first.device)
    params = list(field.decoder.parameters())
    layers = field._cached(f"decoder_{dtype}", params, lambda: _layers(field.decoder, dtype))
    return decode_rows(layers, inputs, dtype)


def decode_rows(
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    inputs: torch.Tensor | list[torch.Tensor],
    dtype: torch.dtype,
) -> torch.Tensor:
    """rgb [P, 3] float32 of the decoder's input rows [P, C] (or their column blocks,
    decoder_parts) through its layers (as dtype), in blocks of DECODER_ROWS rows, the last one
    padded to a multiple of DECODER_PAD (`decode`)."""
    parts = [inputs] if isinstance(inputs, torch.Tensor) else inputs
    num, first_part = len(parts[0]), parts[0]
    rows = -(-num // DECODER_PAD) * DECODER_PAD
    padded = first_part.new_empty(rows, sum(p.shape[1] for p in parts), dtype=dtype)  # [P', C]
    padded[num:] = 0
    column = 0
    for part in parts:  # float32 -> bfloat16 straight into the block: no concatenated copy
        padded[:num, column : column + part.shape[1]] = part
        column += part.shape[1]
    rgb = first_part.new_empty(rows, 3, dtype=torch.float32)
    for first in range(0, rows, DECODER_ROWS):
        block = slice(first, first + DECODER_ROWS)
        rgb[block] = _mlp(layers, padded[block])
    return rgb[:num].sigmoid_()


def decoder_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CPUs with AVX512-BF16 and oneDNN's fused linear op, else float32."""
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    if device.type == "cpu" and _LINEAR_POINTWISE is not None and native():
        return torch.bfloat16
    return torch.float32


def _layers(decoder, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of the decoder's linear layers, as dtype."""
    linear = [layer for layer in decoder.layers if isinstance(layer, torch.nn.Linear)]
    return [(layer.weight.to(dtype), layer.bias.to(dtype)) for layer in linear]


def _mlp(layers: list[tuple[torch.Tensor, torch.Tensor]], inputs: torch.Tensor) -> torch.Tensor:
    """The decoder's logits [P, 3] of inputs [P, C], ReLU between the layers; in bfloat16
    one oneDNN call a layer, the ReLU fused (a bfloat16 ReLU on its own is a slow pass)."""
    hidden = inputs
    for index, (weight, bias) in enumerate(layers):
        last = index == len(layers) - 1
        if inputs.dtype == torch.bfloat16:
            hidden = _LINEAR_POINTWISE(hidden, weight, bias, "none" if last else "relu", [], "")
        else:
            hidden = F.linear(hidden, weight, bias)
            hidden = hidden if last else hidden.relu_()
    return hidden


def _linear_pointwise():
    """oneDNN's fused linear + pointwise op (what torch.compile's CPU code calls), or None in
    builds without it."""
    try:
        return torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):
        return None


_LINEAR_POINTWISE = _linear_pointwise()
