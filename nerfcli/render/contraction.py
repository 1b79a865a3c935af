"""Scene contraction for unbounded scenes: the whole world in a bounded cube.

Points are given in box coordinates, where the inner region (the scene box: cameras and
subject) is [-1, 1]^3. Inside it they keep their coordinates; outside they map as

    contract(x) = (2 - 1/|x|) x/|x|        (|x| > 1)

into the open cube (-2, 2)^3, so the sky or the room at any distance lands in the shell
1 < |y| < 2 and infinity on its surface. |x| is one of two norms:
- "linf", the L-infinity norm (DVGOv2): the unit cube maps to itself and the outer shell is a
  cube too, so a grid over [-2, 2]^3 spends none of its cells on the corners of a ball; DVGOv2
  reports it beating the L2 form on mip-NeRF 360's scenes;
- "l2", the Euclidean norm (mip-NeRF 360): the unit ball maps to itself, the result lies in
  the ball of radius 2.
`uncontract` is the inverse; `radial_stretch` the world length per contracted length along
the radius (what one grid cell spans in world units there).
"""

from __future__ import annotations

import torch

CONTRACTIONS = ("linf", "l2")


def contraction_norm(x: torch.Tensor, kind: str) -> torch.Tensor:
    """|x| [..., 1] of points x [..., 3] in the contraction's norm."""
    if kind == "linf":
        return x.abs().amax(-1, keepdim=True)
    if kind == "l2":
        return torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    raise ValueError(f"unknown contraction {kind!r}; available: {', '.join(CONTRACTIONS)}")


def contract(x: torch.Tensor, kind: str = "linf") -> torch.Tensor:
    """Box coordinates x [..., 3] (finite) -> contracted y [..., 3] in (-2, 2)^3; the identity
    where |x| <= 1. Continuous, with a continuous first derivative across |x| = 1 along the
    radius (d|y|/d|x| = 1/|x|^2 is 1 there)."""
    norm = contraction_norm(x, kind).clamp(min=1.0)  # [..., 1]
    return x * ((2.0 - 1.0 / norm) / norm)


def uncontract(y: torch.Tensor, kind: str = "linf") -> torch.Tensor:
    """Contracted y [..., 3] with |y| < 2 -> box coordinates x [..., 3]: contract's inverse
    (|x| = 1 / (2 - |y|) outside the unit region; infinite on |y| = 2)."""
    norm = contraction_norm(y, kind).clamp(min=1.0)  # [..., 1]
    return y / (norm * (2.0 - norm))


def radial_stretch(y: torch.Tensor, kind: str = "linf") -> torch.Tensor:
    """d|x| / d|y| [...] at contracted points y [..., 3]: 1 inside the unit region,
    1 / (2 - |y|)^2 outside (the largest stretch of any direction there: the tangential one
    is 1 / (|y| (2 - |y|)), smaller for |y| > 1)."""
    norm = contraction_norm(y, kind).clamp(min=1.0, max=2.0 - 1e-6)[..., 0]  # [...]
    return 1.0 / (2.0 - norm) ** 2
