"""The held-out evaluation a training run makes every train.eval_every steps: PSNR over the
scene's held-out views (the views `nerf eval` scores) at 1/eval_downscale resolution, split
across the ranks, and a preview of the first held-out view (render beside truth) written by
rank 0 into the run's previews/ folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from nerfcli.data.images import write_image_atomic
from nerfcli.data.scene import Scene
from nerfcli.errors import NerfError
from nerfcli.metrics import downscale_image, psnr_from_mse, to8b
from nerfcli.render.image import render_view
from nerfcli.training import distributed
from nerfcli.training.events import EvalEvent


@torch.no_grad()
def evaluate_held_out(
    render_fn: Callable,
    scene: Scene,
    chunk: int,
    downscale: int,
    device: torch.device,
    ranks: distributed.Ranks,
    step: int,
    out_dir: Path,
    should_stop: Callable[[], bool] | None = None,
    on_view: Callable[[int, int], None] | None = None,
) -> EvalEvent | None:
    """Held-out PSNR of `render_fn` (the model in eval mode) at 1/downscale resolution, and
    the preview of the first held-out view (rank 0: previews/step_XXXXXXX.png). Before each
    view `should_stop()` may end it (a signal: the run stops without waiting for the views
    left), and then no rank returns a score (None); on_view(done, total) after each of this
    rank's views."""
    k = max(1, downscale)
    views = scene.held_out
    errors: dict[int, float] = {}
    preview_image = None
    mine = ranks.shard(list(enumerate(views)))
    for done, (position, view) in enumerate(mine):
        if should_stop is not None and should_stop():
            break
        out = render_view(render_fn, scene.camera(view), chunk, device, k)
        gt = downscale_image(torch.from_numpy(scene.images[view]), k).to(device)
        gt = gt[: out.rgb.shape[0], : out.rgb.shape[1]]  # [h, w, 3]
        errors[position] = float(torch.mean((out.rgb - gt) ** 2))
        if position == 0:
            preview_image = np.concatenate([to8b(out.rgb), to8b(gt)], 1)  # [h, 2w, 3]
        if on_view is not None:
            on_view(done + 1, len(mine))
    for part in ranks.all_gather_objects(errors):  # every rank gathers once, stopped or not
        errors.update(part)
    if len(errors) < len(views):  # a rank stopped early: no score
        return None
    mean = float(np.mean([errors[i] for i in range(len(views))]))
    if not ranks.is_main:
        return EvalEvent(step, psnr_from_mse(mean), None)
    preview = out_dir / "previews" / f"step_{step:07d}.png"
    try:
        preview.parent.mkdir(exist_ok=True)
        write_image_atomic(preview, preview_image)
    except OSError as exc:
        raise NerfError(
            f"{preview}: cannot write ({exc.strerror or exc}); the last checkpoint is "
            "intact: free space or fix the folder, then --resume"
        ) from None
    return EvalEvent(step, psnr_from_mse(mean), preview)
