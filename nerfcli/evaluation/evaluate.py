"""Score a checkpoint on its held-out views: PSNR, SSIM, and depth error where the scene has
ground-truth depth. Writes render / ground truth / error-map PNGs per view and metrics.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from nerfcli.data.formats.llff import Scene, load_scene, write_image_atomic
from nerfcli.data.rays import make_rays
from nerfcli.errors import DataError
from nerfcli.fsutil import atomic_write
from nerfcli.metrics import downscale_image, error_map, psnr, ssim, to8b
from nerfcli.training.checkpoint import Checkpoint, SceneMeta, restore_model
from nerfcli.training.trainer import render_view


@dataclass
class ViewScore:
    view: int
    psnr: float
    ssim: float
    depth_abs_rel: float | None = None
    depth_rmse: float | None = None
    files: dict[str, str] = field(default_factory=dict)


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

    def to_dict(self) -> dict:
        return asdict(self)


def load_matching_scene(ckpt: Checkpoint, scene_dir: str | Path | None) -> Scene:
    """Load the scene a checkpoint was trained on (or `scene_dir`) and check it matches."""
    meta = ckpt.scene
    root = Path(scene_dir) if scene_dir is not None else Path(meta.root)
    if scene_dir is None and not root.exists():
        raise DataError(
            f"{root}: the checkpoint's scene folder is gone; pass the scene with --scene DIR"
        )
    d = ckpt.config.data
    scene = load_scene(
        root,
        factor=d.factor,
        bd_factor=d.bd_factor,
        recenter=d.recenter,
        spherify=d.spherify,
        llffhold=d.llffhold,
        render_frames=d.render_frames,
    )
    problems = []
    if scene.num_views != len(meta.c2w):
        problems.append(f"{scene.num_views} views, the checkpoint has {len(meta.c2w)}")
    elif (scene.height, scene.width) != (meta.height, meta.width):
        problems.append(
            f"images are {scene.width}x{scene.height}, the checkpoint's {meta.width}x{meta.height}"
        )
    elif not np.allclose(scene.c2w, meta.c2w, atol=1e-4):
        problems.append("its camera poses differ from the checkpoint's")
    if problems:
        raise DataError(
            f"{root}: scene folder does not match the checkpoint ({problems[0]}); "
            "pass the scene it was trained on with --scene"
        )
    return scene


def camera_depth(meta: SceneMeta, c2w: np.ndarray, t: torch.Tensor, downscale: int) -> torch.Tensor:
    """Expected ray depth t [H, W] -> z-depth along the camera axis, in the capture's stored
    units (undoing NDC, the bd_factor rescale and spherify's scale)."""
    height, width = t.shape
    focal = meta.focal / downscale
    c2w_t = torch.as_tensor(c2w, dtype=torch.float32, device=t.device)
    if meta.ndc:
        rays = make_rays(height, width, focal, c2w, ndc=True, device=t.device)
        p = rays.origins + t[..., None] * rays.directions  # [H, W, 3] in NDC
        z = 2.0 / torch.clamp(p[..., 2] - 1.0, max=-1e-6)  # world z (near = 1)
        x = -p[..., 0] * z * width / (2.0 * focal)
        y = -p[..., 1] * z * height / (2.0 * focal)
        world = torch.stack([x, y, z], -1)
        depth = -((world - c2w_t[:3, 3]) @ c2w_t[:3, 2])  # [H, W]
    else:
        depth = t  # camera-frame directions have z = -1, so t is already the z-depth
    linear = np.asarray(meta.transform)[:3, :3]
    total_scale = meta.scale * float(np.cbrt(abs(np.linalg.det(linear))))
    return depth / total_scale


def evaluate(
    ckpt: Checkpoint,
    scene: Scene,
    out_dir: Path,
    device: torch.device,
    downscale: int = 1,
    on_view: Callable[[ViewScore], None] | None = None,
) -> EvalReport:
    import time

    start = time.perf_counter()
    meta = ckpt.scene
    model = restore_model(ckpt, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    views = scene.i_test or scene.i_train
    scores: list[ViewScore] = []
    chunk = ckpt.config.render.chunk
    height = width = 0
    for view in views:
        out = render_view(model, meta, scene.c2w[view], chunk, device, downscale)
        gt = downscale_image(torch.from_numpy(scene.images[view]), downscale).to(device)
        height, width = out.rgb.shape[:2]
        gt = gt[:height, :width]
        score = ViewScore(view=view, psnr=psnr(out.rgb, gt), ssim=ssim(out.rgb, gt))
        if scene.depths is not None:
            gt_depth = torch.from_numpy(scene.depths[view])[None, None]
            if downscale > 1:
                gt_depth = torch.nn.functional.avg_pool2d(gt_depth, downscale)
            gt_depth = gt_depth[0, 0, :height, :width].to(device)
            t = out.depth / torch.clamp(out.opacity, min=1e-6)
            pred = camera_depth(meta, scene.c2w[view], t, downscale)
            valid = torch.isfinite(gt_depth) & (gt_depth > 0)
            diff = (pred - gt_depth)[valid]
            score.depth_abs_rel = float(torch.mean(diff.abs() / gt_depth[valid]))
            score.depth_rmse = float(torch.sqrt(torch.mean(diff**2)))
        rgb = out.rgb.cpu().numpy()
        gt_np = gt.cpu().numpy()
        for kind, image in (
            ("render", to8b(rgb)),
            ("gt", to8b(gt_np)),
            ("error", error_map(rgb, gt_np)),
        ):
            path = out_dir / f"view{view:03d}_{kind}.png"
            write_image_atomic(path, image)
            score.files[kind] = str(path)
        scores.append(score)
        if on_view is not None:
            on_view(score)
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
    )
    with atomic_write(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report
