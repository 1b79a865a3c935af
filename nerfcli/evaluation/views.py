"""One camera of a trained model to pictures: the render `nerf view` makes of the browser's
camera (RGB, depth or accumulation), through the same per-camera render as eval and videos
(`render_view` with the model's no-grad `render_rays`, where the fast paths live)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from nerfcli.data.cameras import Camera
from nerfcli.metrics import colormap, to8b
from nerfcli.models.base import RadianceModel
from nerfcli.render.composite import RenderResult
from nerfcli.render.image import render_view

OUTPUTS = ("rgb", "depth", "accumulation")


class Cancelled(Exception):
    """A render given up because its `cancelled()` said so (the viewer's camera moved on)."""


def render_camera(
    model: RadianceModel,
    camera: Camera,
    chunk: int,
    device: torch.device | str,
    cancelled: Callable[[], bool] | None = None,
) -> RenderResult:
    """Render `camera` (its own size) with the model in eval mode, without gradients; outputs
    shaped [H, W, ...]. The one render of a view the viewer uses: the whole picture in one
    call (the chunks shared by render_view's worker threads, each worker the same share),
    asking `cancelled()` before each chunk and raising Cancelled when it says yes."""

    def render_fn(rays, near, far):
        if cancelled is not None and cancelled():
            raise Cancelled
        return model.render_rays(rays, near, far, train=False)

    return render_view(render_fn, camera, chunk, device)


def picture(result: RenderResult, output: str, ndc: bool) -> np.ndarray:
    """uint8 [H, W, 3] of one output: rgb, depth (colour-mapped closeness, normalised per
    picture) or accumulation (opacity, grey)."""
    if output == "rgb":
        return to8b(result.rgb)
    if output == "accumulation":
        return to8b(result.opacity[..., None].expand(*result.opacity.shape, 3))
    if output != "depth":
        raise ValueError(f"unknown output {output!r}")
    depth = result.depth / torch.clamp(result.opacity, min=1e-6)  # [H, W]
    closeness = torch.clamp(1.0 - depth, 0.0, 1.0) if ndc else 1.0 / torch.clamp(depth, min=1e-6)
    values = closeness.cpu().numpy()
    seen = result.opacity.cpu().numpy() > 0.05
    lo, hi = np.percentile(values[seen], [1, 99]) if seen.any() else (0.0, 1.0)
    return colormap(np.clip((values - lo) / max(hi - lo, 1e-6), 0.0, 1.0))
