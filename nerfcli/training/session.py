"""The one path from a scene folder to a training run, used by `nerf train`, `nerf demo` and
the benches: resolve the config (defaults < model/device profile < preset < --set < flags),
load the scene the config describes, then build the Trainer and the run folder in the only
safe order (a new folder is created only once the Trainer has checked there is room)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from nerfcli.config import Config, available_presets, build_config, with_values
from nerfcli.data.formats import load_scene, plan_frame, preset_of, scene_root
from nerfcli.data.plan import FramePlan
from nerfcli.data.scene import Scene
from nerfcli.errors import ConfigError
from nerfcli.models.registry import check_keys_read, model_profile
from nerfcli.training import distributed
from nerfcli.training.checkpoint import load_checkpoint
from nerfcli.training.run_dir import check_new_run_dir, prepare_run_dir
from nerfcli.training.trainer import EventCallback, Trainer


def default_preset(scene: Path, spherify: bool = False) -> str:
    """--spherify: surround; a preset named like the folder (fern); else the format's own."""
    if spherify:
        return "surround"
    name = scene_root(scene).name
    if name in available_presets():
        return name
    return preset_of(scene)


def resolve_config(
    scene: Path,
    config: str | None = None,
    model: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    device_type: str = "cpu",
    spherify: bool = False,
    data: dict | None = None,
    train: dict | None = None,
    choices: dict | None = None,
) -> Config:
    """The config alone (resolve_run without the plan)."""
    args = (scene, config, model, overrides, device_type, spherify, data, train, choices)
    return resolve_run(*args)[0]


def resolve_run(
    scene: Path,
    config: str | None = None,
    model: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    device_type: str = "cpu",
    spherify: bool = False,
    data: dict | None = None,
    train: dict | None = None,
    choices: dict | None = None,
) -> tuple[Config, FramePlan]:
    """defaults < model/device profile < preset < --set < first-class flags (`data`, `train`:
    section values from flags; None values are left alone), and the frame plan. The data
    section is resolved first (profiles set no data keys) and the plan settled on it
    (nerfcli.data.plan: the scene kind, factor, frame and cameras), because the model profile
    is the plan's kind's. The config records what the plan settled (so eval reloads the
    same); `choices`, when given, receives the scene type's and the factor's Choice."""
    config = config or default_preset(scene, spherify)
    extra = list(overrides)
    if model is not None:
        extra.append(f"model.name={model}")
    if spherify:
        extra = ["data.spherify=true", "data.ndc=false", *extra]
    flags = data or {}
    asked = with_values(build_config(config, extra), "data", **flags)
    check_keys_read(asked.model.name, overrides)
    plan = plan_frame(scene, asked.data)
    if choices is not None:
        choices.update(scene_type=plan.choices["scene_type"], factor=plan.choices["factor"])
    settled = {"scene_type": plan.kind, "factor": plan.factor, "ndc": plan.ndc}
    profile = model_profile(asked.model.name, device_type, plan.profile_kind)
    cfg = build_config(config, extra, base=profile)
    cfg = with_values(cfg, "data", **{**flags, **settled})
    return with_values(cfg, "train", **(train or {})), plan


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


def check_resume_flags(**given: object) -> None:
    """--resume continues with the run's own config: refuse flags that would change it."""
    named = [name for name, value in given.items() if value]
    if named:
        raise ConfigError(
            "--resume continues with the run's own config; drop "
            + "/".join(f"--{n.replace('_', '-')}" for n in named)
            + " (only --iters, --max-minutes and --device may change)"
        )
