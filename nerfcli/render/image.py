"""Rendering whole images: rays in chunks through a model's render function, and one view of
a camera at full or reduced resolution. Models are passed in as callables, never imported.

On the CPU the chunks of a view are shared out to one worker thread per core, each running its
tensor operations on one core: an operation split over all cores waits at its end for the
slowest of them, which on a machine shared with other jobs is most of the time (fern frames
of the TensoRF CPU profile on a busy 2-core machine: 0.9-2.3 s each with two workers against
1.9-40 s with the chunks in turn on two threads). The caller's own thread count drops to 1
meanwhile: its idle OpenMP threads would spin on a core.
The render function must then be safe to call from several threads (the models are: they
render from read-only snapshots of their weights, and a snapshot two threads build at once is
built twice with the same values; see TensorfField._cached and models/tensorf/frozen.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from nerfcli.data.cameras import Camera
from nerfcli.data.rays import Rays, camera_rays
from nerfcli.render.composite import RenderResult

RenderFn = Callable[[Rays], RenderResult]


def render_in_chunks(
    render_fn: RenderFn, rays: Rays, chunk: int, workers: int | None = None
) -> RenderResult:
    """Render a flat bundle of rays [R] in chunks of at most `chunk` rays and concatenate.
    workers: threads sharing the chunks (None: one per core for CPU rays, else 1); with more
    than one, each runs its operations on one core. The chunks are cut near-equal and their
    count a multiple of the workers (`balanced_chunk`), so that the workers finish together."""
    if workers is None:
        workers = torch.get_num_threads() if rays.origins.device.type == "cpu" else 1
    size = balanced_chunk(len(rays), chunk, workers)
    parts = [rays[start : start + size] for start in range(0, len(rays), size)]
    workers = min(workers, len(parts))
    if workers > 1:
        # The OpenMP thread count is per thread: each worker sets its own, and the caller's
        # drops to 1 meanwhile (its idle OpenMP threads would spin, taking a core).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(
                workers, initializer=torch.set_num_threads, initargs=(1,)
            ) as pool:
                outputs = list(pool.map(_with_grad_mode(render_fn), parts))
        finally:
            torch.set_num_threads(threads)
    else:
        outputs = [render_fn(part) for part in parts]
    keys = outputs[0].extras.keys()
    return RenderResult(
        rgb=torch.cat([o.rgb for o in outputs], 0),
        depth=torch.cat([o.depth for o in outputs], 0),
        disparity=torch.cat([o.disparity for o in outputs], 0),
        opacity=torch.cat([o.opacity for o in outputs], 0),
        extras={k: torch.cat([o.extras[k] for o in outputs], 0) for k in keys},
    )


def balanced_chunk(rays: int, chunk: int, workers: int) -> int:
    """The largest chunk <= `chunk` that cuts `rays` into a multiple of `workers` near-equal
    chunks (10,000 rays at chunk 8192 on 2 workers: 2 x 5000, not 8192 + 1808)."""
    workers = max(1, workers)
    count = workers * math.ceil(rays / (max(1, chunk) * workers))  # chunks, a multiple of workers
    return max(1, math.ceil(rays / max(1, count)))


def _with_grad_mode(render_fn: RenderFn) -> RenderFn:
    """render_fn with the caller's grad mode (grad mode is per thread in PyTorch)."""
    enabled = torch.is_grad_enabled()

    def run(part: Rays) -> RenderResult:
        with torch.set_grad_enabled(enabled):
            return render_fn(part)

    return run


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
