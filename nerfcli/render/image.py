"""Rendering whole images: rays in chunks through a model's render function, and one view of
a camera at full or reduced resolution. Models are passed in as callables, never imported."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nerfcli.data.cameras import Camera
from nerfcli.data.rays import Rays, camera_rays
from nerfcli.render.composite import RenderResult

RenderFn = Callable[[Rays], RenderResult]


def render_in_chunks(render_fn: RenderFn, rays: Rays, chunk: int) -> RenderResult:
    """Render a flat bundle of rays [R] in chunks of at most `chunk` rays and concatenate."""
    outputs: list[RenderResult] = []
    for start in range(0, len(rays), chunk):
        outputs.append(render_fn(rays[start : start + chunk]))
    keys = outputs[0].extras.keys()
    return RenderResult(
        rgb=torch.cat([o.rgb for o in outputs], 0),
        depth=torch.cat([o.depth for o in outputs], 0),
        disparity=torch.cat([o.disparity for o in outputs], 0),
        opacity=torch.cat([o.opacity for o in outputs], 0),
        extras={k: torch.cat([o.extras[k] for o in outputs], 0) for k in keys},
    )


@torch.no_grad()
def render_view(
    render_fn: Callable[[Rays, float, float], RenderResult],
    camera: Camera,
    chunk: int,
    device: torch.device | str,
    downscale: int = 1,
) -> RenderResult:
    """Render one full view of `camera` (optionally at 1/downscale resolution) through
    render_fn(rays [R], near, far); outputs shaped [H, W, ...], rgb clamped to [0, 1]."""
    camera = camera.downscaled(downscale)
    height, width = camera.height, camera.width
    rays = camera_rays(camera, device=device).reshape(-1)
    out = render_in_chunks(lambda batch: render_fn(batch, camera.near, camera.far), rays, chunk)
    return RenderResult(
        rgb=out.rgb.reshape(height, width, 3).clamp(0, 1),
        depth=out.depth.reshape(height, width),
        disparity=out.disparity.reshape(height, width),
        opacity=out.opacity.reshape(height, width),
    )
