"""The whole config of a run: the shared sections (nerfcli.config: data, render, train) and each
model's own section, kept beside its model (`model.nerf`: models/nerf_config.py;
`model.tensorf`: models/tensorf/config.py), as nanoGPT keeps GPTConfig beside GPT.

- `build_config`: defaults < preset (or a base dict) < --set, validated; `with_values`: flags.
- Keys that moved keep their old spellings (MOVED_KEYS: `render.n_samples` is now
  `model.nerf.n_samples`, ...), in --set, presets and checkpoints alike.
- Which model reads a key is derived from the section that holds it: `model.<name>.*` is read
  by model <name> alone; the few shared keys a model ignores are listed beside its config
  (`INSTEAD`, with what to set instead). `check_keys_read` makes a --set on a key the chosen
  model does not read a usage error naming the key and the model that reads it.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from nerfcli.config import (
    DataConfig,
    RenderConfig,
    TrainConfig,
    from_dict,
    merge_dicts,
    parse_override,
    read_yaml_config,
    validate,
)
from nerfcli.errors import UsageError
from nerfcli.models.nerf_config import NerfModelConfig
from nerfcli.models.tensorf.config import TensorfModelConfig


@dataclass(frozen=True)
class ModelConfig:
    name: str = "tensorf"  # a key of nerfcli.models.MODELS
    # each model's own section, named as the model (only that model reads it)
    nerf: NerfModelConfig = field(default_factory=NerfModelConfig)
    tensorf: TensorfModelConfig = field(default_factory=TensorfModelConfig)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Old spelling -> the key it moved to (read so in --set, presets, base dicts and checkpoints).
MOVED_KEYS: dict[str, str] = {
    "render.n_samples": "model.nerf.n_samples",
    "render.n_importance": "model.nerf.n_importance",
    "render.lindisp": "model.nerf.lindisp",
    "render.raw_noise_std": "model.nerf.raw_noise_std",
}


def model_sections() -> dict[str, type]:
    """Each model's own config class by model name (the sections of ModelConfig)."""
    hints = typing.get_type_hints(ModelConfig)
    return {f.name: hints[f.name] for f in fields(ModelConfig) if f.name != "name"}


# ----------------------------------------------------------------------------- building


def build_config(
    preset: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict | None = None,
) -> Config:
    """Resolve defaults < preset (or `base` dict) < overrides into a validated Config."""
    data: dict = move_keys(dict(base or {}))
    if preset is not None:
        data = merge_dicts(data, move_keys(read_yaml_config(preset)))
    for text in overrides:
        data = merge_dicts(data, move_keys(parse_override(text)))
    cfg = from_dict(Config, data)
    validate_config(cfg)
    return cfg


def with_values(cfg: Config, section: str, **values: Any) -> Config:
    """Return cfg with some keys of one section replaced (first-class CLI flags)."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return cfg
    new = replace(cfg, **{section: replace(getattr(cfg, section), **values)})
    validate_config(new)
    return new


def validate_config(cfg: Config) -> None:
    """The shared sections' checks (nerfcli.config.validate), then each model's own."""
    validate(cfg)
    for name in model_sections():
        getattr(cfg.model, name).validate()


def config_from_checkpoint_dict(data: dict) -> Config:
    cfg = from_dict(Config, _upgrade_keys(data), "checkpoint config")
    validate_config(cfg)
    return cfg


def move_keys(data: dict) -> dict:
    """A nested config dict with the old spellings of MOVED_KEYS moved to their new keys (a
    value already at the new key, in the same dict, wins)."""
    if not isinstance(data, dict):
        return data
    for old, new in MOVED_KEYS.items():
        old_section, old_key = old.split(".")
        section = data.get(old_section)
        if not isinstance(section, dict) or old_key not in section:
            continue
        section = dict(section)
        value = section.pop(old_key)
        moved: dict = {}
        node = moved
        *path, last = new.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
        data = merge_dicts(moved, {**data, old_section: section})
    return data


def _upgrade_keys(data: dict) -> dict:
    """Keys renamed since a checkpoint was written: train.amp (bf16 on CUDA) became
    train.precision (true: auto, false: fp32); the classic model's sampling keys moved from
    render to model.nerf (MOVED_KEYS). (The data section's are upgraded by its formats:
    nerfcli.data.formats.upgrade_data_section.)"""
    data = move_keys(data)
    train = data.get("train") if isinstance(data, dict) else None
    if not isinstance(train, dict) or "amp" not in train:
        return data
    train = dict(train)
    amp = train.pop("amp")
    train.setdefault("precision", "auto" if amp is True else "fp32")
    return {**data, "train": train}


# ----------------------------------------------------------------------------- who reads a key


def check_keys_read(name: str, overrides: typing.Iterable[str]) -> None:
    """UsageError for a --set override (`section.key=value`) that model `name` does not read:
    a key of another model's section (named, with what model `name` reads instead when its
    config says), or a shared key the model's config lists in its INSTEAD table."""
    sections = model_sections()
    instead = getattr(sections.get(name), "INSTEAD", {})
    for text in overrides:
        typed = ".".join(_dotted(parse_override(text)))
        key = ".".join(_dotted(move_keys(parse_override(text))))
        parts = key.split(".")
        owner = parts[1] if parts[0] == "model" and len(parts) > 1 else None
        advice = _advice(instead, key)
        if owner in sections and owner != name:
            where = f"{key}, " if key != typed else ""
            reader = f" ({where}the {owner} model's: --model {owner})"
        elif advice:
            reader = ""
        else:
            continue
        tail = f"; {advice}" if advice else ""
        raise UsageError(f"--set {typed}: the {name} model does not read it{reader}{tail}")


def _advice(instead: dict[str, str], key: str) -> str | None:
    for prefix, advice in instead.items():
        if key == prefix or key.startswith(prefix + "."):
            return advice
    return None


def _dotted(tree: dict) -> list[str]:
    """{'train': {'lr': 1e-3}} -> ['train', 'lr'] (one --set holds one key)."""
    key, value = next(iter(tree.items()))
    return [key, *_dotted(value)] if isinstance(value, dict) and len(value) == 1 else [key]


__all__ = [
    "MOVED_KEYS",
    "Config",
    "ModelConfig",
    "NerfModelConfig",
    "TensorfModelConfig",
    "build_config",
    "check_keys_read",
    "config_from_checkpoint_dict",
    "model_sections",
    "move_keys",
    "validate_config",
    "with_values",
]
