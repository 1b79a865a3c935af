"""Score a checkpoint on its held-out views: PSNR, SSIM, and depth error where the scene has
ground-truth depth. Writes render / ground truth / error-map PNGs per view and metrics.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from nerfcli.data.formats import every_view_data, load_scene
from nerfcli.data.images import write_image_atomic
from nerfcli.data.scene import Scene
from nerfcli.errors import DataError
from nerfcli.evaluation.depth import camera_depth, depth_error
from nerfcli.fsutil import atomic_write
from nerfcli.metrics import downscale_image, error_map, psnr, ssim, to8b
from nerfcli.render.image import render_view
from nerfcli.training.checkpoint import Checkpoint, restore_model
from nerfcli.training.distributed import SINGLE, Ranks


@dataclass
class ViewScore:
    view: int
    psnr: float
    ssim: float
    depth_abs_rel: float | None = None
    depth_rmse: float | None = None
    files: dict[str, str] = field(default_factory=dict)
    lpips: float | None = None


@dataclass
class EvalReport:
    checkpoint: str
    step: int
    model: str
    scene: str
    downscale: int
    height: int
    width: int
    views: list[ViewScore]
    psnr: float
    ssim: float
    depth_abs_rel: float | None
    depth_rmse: float | None
    seconds: float
    out_dir: str
    lpips: float | None = None
    lpips_net: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def load_matching_scene(
    ckpt: Checkpoint, scene_dir: str | Path | None, testskip: int | None = None
) -> Scene:
    """Load the scene a checkpoint was trained on (or `scene_dir`) with the checkpoint's data
    config, and check its training views match. testskip (Blender): which test views to load
    (default 1: all of them, the papers' protocol)."""
    meta = ckpt.scene
    root = Path(scene_dir) if scene_dir is not None else Path(meta.root)
    if scene_dir is None and not root.exists():
        raise DataError(
            f"{root}: the checkpoint's scene folder is gone; pass the scene with --scene DIR"
        )
    scene = load_scene(root, every_view_data(meta.format, ckpt.config.data, testskip))
    problems = []
    train_now, train_then = scene.i_train, meta.i_train
    if len(train_now) != len(train_then):
        problems.append(f"{len(train_now)} training views, the checkpoint has {len(train_then)}")
    elif (scene.height, scene.width) != (meta.height, meta.width):
        problems.append(
            f"images are {scene.width}x{scene.height}, the checkpoint's {meta.width}x{meta.height}"
        )
    elif not np.allclose(scene.c2w[train_now], meta.c2w[train_then], atol=1e-4):
        problems.append("its camera poses differ from the checkpoint's")
    elif not np.allclose(scene.K[train_now], meta.K[train_then], rtol=1e-5):
        problems.append(
            "its camera intrinsics differ from the checkpoint's (a COLMAP sparse/0 added or "
            "removed since training?)"
        )
    if problems:
        raise DataError(
            f"{root}: scene folder does not match the checkpoint ({problems[0]}); "
            "pass the scene it was trained on with --scene"
        )
    return scene


@torch.no_grad()
def _pixels(camera) -> int:
    return camera.height * camera.width


def _score_view(
    out,
    camera,
    scene: Scene,
    view: int,
    device: torch.device,
    downscale: int,
    out_dir: Path,
    lpips_model=None,
) -> tuple[ViewScore, tuple[int, int]]:
    """Score one rendered held-out view (`render_view`'s result `out` of `camera`) against its
    photo and write its render / ground truth / error PNGs: (score, (height, width))."""
    gt = downscale_image(torch.from_numpy(scene.images[view]), downscale).to(device)
    height, width = out.rgb.shape[:2]
    gt = gt[:height, :width]
    score = ViewScore(view=view, psnr=psnr(out.rgb, gt), ssim=ssim(out.rgb, gt))
    if lpips_model is not None:
        score.lpips = float(lpips_model(out.rgb.to(device), gt)[0])
    if scene.depths is not None:
        gt_depth = torch.from_numpy(scene.depths[view])[None, None]
        if downscale > 1:
            gt_depth = torch.nn.functional.avg_pool2d(gt_depth, downscale)
        gt_depth = gt_depth[0, 0, :height, :width]
        t = out.depth / torch.clamp(out.opacity, min=1e-6)
        pred = camera_depth(camera.downscaled(downscale), t, scene.scale)
        error = depth_error(pred, gt_depth)
        score.depth_abs_rel, score.depth_rmse = error.abs_rel, error.rmse
    rgb, gt = out.rgb.cpu().numpy(), gt.cpu().numpy()
    for kind, image in (("render", to8b(rgb)), ("gt", to8b(gt)), ("error", error_map(rgb, gt))):
        path = out_dir / f"view{view:03d}_{kind}.png"
        write_image_atomic(path, image)
        score.files[kind] = str(path)
    return score, (height, width)


def evaluate(
    ckpt: Checkpoint,
    scene: Scene,
    out_dir: Path,
    device: torch.device,
    downscale: int = 1,
    on_view: Callable[[ViewScore], None] | None = None,
    ranks: Ranks = SINGLE,
    lpips_model=None,
) -> EvalReport:
    """Score every held-out view of `scene` (the views the trainer reports too) and write
    render / ground truth / error PNGs and metrics.json into out_dir. Across processes each
    rank scores and writes the views rank::world, and rank 0 writes metrics.json; every rank
    returns the whole report.

    On the CPU a view is scored and written on a thread of its own while the next one renders
    (on the render's own worker threads): scoring (SSIM, the PNGs) is serial work that would
    otherwise leave a core idle between renders."""
    import time

    start = time.perf_counter()
    model = restore_model(ckpt, device)

    def render_fn(rays, near, far):
        return model.render_rays(rays, near, far, train=False)

    views = ranks.shard(list(enumerate(scene.held_out)))
    model.prepare_renders(
        sum(_pixels(scene.camera(view).downscaled(downscale)) for _, view in views)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    mine: list[tuple[int, ViewScore, tuple[int, int]]] = []
    chunk = ckpt.config.render.chunk
    with ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(1,)) as scorer:
        pending: list[tuple[int, Future]] = []

        def finish() -> None:
            position, future = pending.pop()
            score, shape = future.result()
            mine.append((position, score, shape))
            if on_view is not None:
                on_view(score)

        for position, view in views:
            camera = scene.camera(view)
            out = render_view(render_fn, camera, chunk, device, downscale)
            if pending:
                finish()
            pending.append(
                (
                    position,
                    scorer.submit(
                        _score_view,
                        out,
                        camera,
                        scene,
                        view,
                        device,
                        downscale,
                        out_dir,
                        lpips_model,
                    ),
                )
            )
        if pending:
            finish()
    done = sorted(item for part in ranks.all_gather_objects(mine) for item in part)
    scores = [score for _, score, _ in done]
    height, width = done[-1][2] if done else (0, 0)
    depth_scores = [s.depth_abs_rel for s in scores if s.depth_abs_rel is not None]
    report = EvalReport(
        checkpoint=str(ckpt.path),
        step=ckpt.step,
        model=ckpt.config.model.name,
        scene=str(scene.root),
        downscale=downscale,
        height=height,
        width=width,
        views=scores,
        psnr=float(np.mean([s.psnr for s in scores])),
        ssim=float(np.mean([s.ssim for s in scores])),
        depth_abs_rel=float(np.mean(depth_scores)) if depth_scores else None,
        depth_rmse=float(np.mean([s.depth_rmse for s in scores])) if depth_scores else None,
        seconds=time.perf_counter() - start,
        out_dir=str(out_dir),
        lpips=None if lpips_model is None else float(np.mean([s.lpips for s in scores])),
        lpips_net=None if lpips_model is None else lpips_model.backbone.net,
    )
    if ranks.is_main:
        with atomic_write(out_dir / "metrics.json") as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report
