"""A command's config and frame plan, resolved in one place for `train`, `rays`,
`inspect-poses`, `demo` and the benches (nothing from training is needed to inspect a
capture): defaults < model/device profile < preset < --set < first-class flags, where the
profile is the one of the plan's scene kind (nerfcli.data.plan), so the data section and the
plan are settled first."""

from __future__ import annotations

from pathlib import Path

from nerfcli.config import available_presets
from nerfcli.data.formats import plan_frame, preset_of, scene_root
from nerfcli.data.plan import FramePlan
from nerfcli.models.config import Config, build_config, with_values
from nerfcli.models.registry import check_keys_read, model_profile


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
