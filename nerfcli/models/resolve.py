"""A command's config and frame plan, resolved in one place for `train`, `rays`,
`inspect-poses`, `demo` and the benches (nothing from training is needed to inspect a
capture): defaults < model/device profile < preset < --set < first-class flags, where the
profile is the one of the plan's scene kind (nerfcli.data.plan), so the data section and the
plan are settled first. A command hands its parameters over as one ConfigRequest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nerfcli.config import DataConfig, available_presets
from nerfcli.data.formats import (
    check_options,
    check_set_keys,
    detect_format,
    option_owner,
    plan_frame,
    preset_of,
    scene_root,
)
from nerfcli.data.plan import Choice, FramePlan
from nerfcli.models.config import Config, build_config, with_values
from nerfcli.models.registry import check_keys_read, model_profile


@dataclass(frozen=True)
class ConfigRequest:
    """What a command asks of its config, built from its parameters.

    scene      the capture (folder or file)
    config     a preset name or YAML path; None: default_preset(scene)
    model      a key of nerfcli.models.MODELS; None: the config's
    overrides  --set section.key=value, in order
    device     "cpu" or "cuda": the model profile's device
    data       first-class data flags: shared keys (factor, format, scene_type, ...) or a
               format's own (half_res -> data.blender.half_res); None values are not given
    train      first-class train flags (iters, max_minutes, seed); None values are not given
    """

    scene: Path
    config: str | None = None
    model: str | None = None
    overrides: tuple[str, ...] = ()
    device: str = "cpu"
    data: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)


def default_preset(scene: Path) -> str:
    """A preset named like the folder (fern); else the format's own."""
    name = scene_root(scene).name
    if name in available_presets():
        return name
    return preset_of(scene)


def resolve_config(request: ConfigRequest) -> Config:
    """The config alone (resolve without the plan)."""
    return resolve(request)[0]


def resolve(
    request: ConfigRequest, choices: dict[str, Choice] | None = None
) -> tuple[Config, FramePlan]:
    """The request's config and frame plan. The data section is resolved first (profiles set
    no data keys) and the plan settled on it (nerfcli.data.plan: the scene kind, factor,
    frame and cameras), because the model profile is the plan's kind's. The config records
    what the plan settled and the capture format's own options in full (so eval reloads the
    same); `choices`, when given, receives the scene type's and the factor's Choice."""
    config = request.config or default_preset(request.scene)
    overrides = list(request.overrides)
    check_set_keys(None, overrides)
    extra = overrides if request.model is None else [*overrides, f"model.name={request.model}"]
    asked = build_config(config, extra)
    asked = with_values(asked, "data", **data_flags(asked.data, request.data))
    check_keys_read(asked.model.name, overrides)
    plan = plan_frame(request.scene, asked.data)
    check_set_keys(plan.format, overrides)
    if choices is not None:
        choices.update(scene_type=plan.choices["scene_type"], factor=plan.choices["factor"])
    settled = {"scene_type": plan.kind, "factor": plan.factor, "ndc": plan.ndc}
    profile = model_profile(asked.model.name, request.device, plan.profile_kind)
    cfg = build_config(config, extra, base=profile)
    cfg = with_values(cfg, "data", **{**data_flags(cfg.data, request.data), **settled})
    cfg = with_values(cfg, "data", **{plan.format: check_options(cfg.data, plan.format)})
    return with_values(cfg, "train", **request.train), plan


def resolve_data(request: ConfigRequest) -> DataConfig:
    """The request's data section before any frame plan (defaults < preset < --set < flags;
    the capture format's own section complete and checked): what `inspect-poses` hands the
    format's `inspect`, which plans itself, or (LLFF) checks even poses a plan would refuse."""
    config = request.config or default_preset(request.scene)
    overrides = list(request.overrides)
    check_set_keys(None, overrides)
    asked = build_config(config, overrides)
    data = with_values(asked, "data", **data_flags(asked.data, request.data)).data
    name = detect_format(request.scene) if data.format == "auto" else data.format
    check_set_keys(name, overrides)
    return replace(data, format=name, **{name: check_options(data, name)})


def data_flags(data: DataConfig, flags: Mapping[str, Any]) -> dict[str, Any]:
    """First-class flags as DataConfig values: shared keys as they are, a format's own option
    merged into that format's section; None values (not given) left out."""
    out: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None:
            continue
        owner = option_owner(key)
        if owner is None:
            out[key] = value
        else:
            out[owner] = {**out.get(owner, getattr(data, owner)), key: value}
    return out
