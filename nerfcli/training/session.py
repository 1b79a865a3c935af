"""The one path from a scene folder to a training run, used by `nerf train`, `nerf demo` and
the benches: the config and frame plan (nerfcli.models.resolve, re-exported here), the scene
they describe, then the Trainer and the run folder in the only safe order (a new folder is
created only once the Trainer has checked there is room)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from nerfcli.data.formats import load_scene
from nerfcli.data.plan import FramePlan
from nerfcli.data.scene import Scene
from nerfcli.models.config import Config, with_values
from nerfcli.models.resolve import ConfigRequest, default_preset, resolve, resolve_config
from nerfcli.training import distributed
from nerfcli.training.checkpoint import load_checkpoint
from nerfcli.training.run_dir import check_new_run_dir, prepare_run_dir
from nerfcli.training.trainer import EventCallback, Trainer


def load_training_scene(
    scene: Path, cfg: Config, load_images: bool = True, plan: FramePlan | None = None
) -> Scene:
    """The scene exactly as `cfg.data` (and its plan, when settled already) describes it."""
    return load_scene(scene, cfg.data, load_images, plan)


def settle_config(cfg: Config, scene: Scene) -> Config:
    """Record what the scene decided in the config that is saved with the run: the
    background actually used (auto -> the format's), whether rays are in NDC, the factor
    (auto -> the one used) and the scene kind (so eval reloads the same training frame)."""
    data = replace(
        cfg.data,
        background=scene.background,
        ndc=scene.ndc,
        factor=scene.factor,
        scene_type=scene.kind,
    )
    return replace(cfg, data=data)


@dataclass
class Run:
    """A started run: the settled config (saved in the run folder), its scene, the Trainer
    (`run.trainer.run()` trains) and the folder."""

    cfg: Config
    scene: Scene
    trainer: Trainer
    out_dir: Path


def start_run(
    cfg: Config,
    scene: Scene,
    out_dir: Path,
    device: torch.device,
    resume: bool = False,
    on_event: EventCallback | None = None,
    ranks: distributed.Ranks | None = None,
) -> Run:
    """Trainer + run folder. Resume: the folder must hold a checkpoint (checked first); new:
    the folder must be missing or empty, and is created only after the Trainer is built.
    Across processes every rank checks, and rank 0 alone writes (after all have checked)."""
    out_dir = Path(out_dir)
    ranks = ranks or distributed.current()
    cfg = settle_config(cfg, scene)
    if resume and ranks.is_main:
        prepare_run_dir(out_dir, cfg, resume=True)
    elif not resume:
        check_new_run_dir(out_dir)
    trainer = Trainer(cfg, scene, out_dir, device, resume=resume, on_event=on_event, ranks=ranks)
    ranks.barrier()
    if not resume and ranks.is_main:
        prepare_run_dir(out_dir, cfg, resume=False)
    return Run(cfg, scene, trainer, out_dir)


def resume_config(out_dir: Path, iters: int | None, max_minutes: float | None) -> Config:
    """A run's own config for --resume; only the length of the run may change."""
    if distributed.current().is_main:
        prepare_run_dir(out_dir, None, resume=True)
    cfg = load_checkpoint(out_dir / "ckpt.pt").config
    return with_values(cfg, "train", iters=iters, max_minutes=max_minutes)


__all__ = [
    "Run",
    "ConfigRequest",
    "default_preset",
    "load_training_scene",
    "resolve_config",
    "resolve",
    "resume_config",
    "settle_config",
    "start_run",
]
