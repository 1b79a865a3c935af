"""Positional encoding: x -> [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)].

The channel order (input first, then sin/cos per frequency) matches the reference nerf-pytorch,
so an input of D channels gives D + 2 D L channels (3 + 6L for points and directions). The plain
loop it is tested against is nerfcli.models.reference.positional_encoding_reference.
"""

from __future__ import annotations

import torch


def encoded_channels(in_channels: int, num_freqs: int, include_input: bool = True) -> int:
    return in_channels * (int(include_input) + 2 * num_freqs)


def positional_encoding(
    x: torch.Tensor, num_freqs: int, include_input: bool = True
) -> torch.Tensor:
    """x [..., D] -> [..., D (include_input) + 2 D num_freqs]."""
    if num_freqs == 0:
        return x if include_input else x[..., :0]
    freqs = 2.0 ** torch.arange(num_freqs, dtype=x.dtype, device=x.device)  # [L]
    scaled = x[..., None, :] * freqs[:, None]  # [..., L, D]
    # interleave per frequency: [sin(f0 x), cos(f0 x), sin(f1 x), cos(f1 x), ...]
    sincos = torch.stack([torch.sin(scaled), torch.cos(scaled)], -2)  # [..., L, 2, D]
    sincos = sincos.reshape(*x.shape[:-1], 2 * num_freqs * x.shape[-1])  # [..., 2 L D]
    if include_input:
        return torch.cat([x, sincos], -1)
    return sincos
