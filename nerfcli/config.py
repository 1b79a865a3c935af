"""Configuration: frozen dataclasses, YAML scene presets and `--set section.key=value` overrides.

Precedence: dataclass defaults < scenes/<name>.yaml (following its `base:` chain) < --set < flags.
Unknown keys are a ConfigError that lists the valid ones, so a typo never passes silently.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from nerfcli.errors import ConfigError

SCENES_DIR = Path(__file__).resolve().parent.parent / "scenes"
SCENE_TYPES = ("auto", "forward", "object", "unbounded")


@dataclass(frozen=True)
class DataConfig:
    format: str = "auto"  # auto (detected from the folder), llff, blender or transforms
    # image downsampling, images_{factor}/ or resized in-process; 0: auto, the smallest power
    # of two bringing the longer side to <= 1000 px (nerfcli.data.plan.auto_factor)
    factor: int = 0
    # every llffhold-th view (0, 8, 16, ...) is held out for testing; 0: none (LLFF, and
    # transforms.json captures without split lists)
    llffhold: int = 8
    ndc: bool = True  # forward-facing scenes render in normalised device coordinates
    # auto: chosen from the poses (forward-facing LLFF: forward; Blender: object; surround
    # captures: unbounded); forward (NDC), object (a bounded box) or unbounded (contracted)
    scene_type: str = "auto"
    background: str = "auto"  # auto (white for Blender, else black), white, black or random
    # frames of the default render path; 0: the format's own (its RENDER_FRAMES: Blender 40,
    # as nerf-pytorch; LLFF and transforms.json 120)
    render_frames: int = 0
    # Each capture format's own options, as given (data.llff.bd_factor, data.blender.half_res,
    # data.transforms.skip_missing, ...): the format module's config dataclass (its CONFIG in
    # nerfcli/data/formats/) names, types, defaults and checks them.
    llff: dict = field(default_factory=dict)
    blender: dict = field(default_factory=dict)
    transforms: dict = field(default_factory=dict)


@dataclass(frozen=True)
class NerfModelConfig:
    netdepth: int = 8
    netwidth: int = 256
    netdepth_fine: int = 8
    netwidth_fine: int = 256
    multires: int = 10  # log2 of the max positional-encoding frequency for xyz
    multires_views: int = 4  # same for view directions
    use_viewdirs: bool = True
    skips: tuple[int, ...] = (4,)  # the input is concatenated again after these layers


@dataclass(frozen=True)
class TensorfModelConfig:
    """TensoRF-VM. Defaults are TensoRF's LLFF recipe; nerfcli.models.tensorf.device_profile
    overrides some of them per device (CPU: smaller, faster; GPU: larger)."""

    density_components: tuple[int, int, int] = (16, 4, 4)  # per mode: xy|z, xz|y, yz|x
    appearance_components: tuple[int, int, int] = (48, 12, 12)
    app_dim: int = 27  # features fed to the colour decoder
    decoder_width: int = 128
    view_pe: int = 0  # positional-encoding frequencies of view directions in the decoder
    feature_pe: int = 0  # positional-encoding frequencies of appearance features in the decoder
    grid_init: tuple[int, int, int] = (128, 128, 128)  # starting vertices per axis (x, y, z)
    grid_final: tuple[int, int, int] = (320, 320, 320)  # after the last upsampling
    upsample_steps: tuple[int, ...] = (2000, 3000, 4000, 5500)
    alpha_mask_steps: tuple[int, ...] = (2500, 4000)
    density_activation: str = "relu"  # relu, or softplus(feature + density_shift)
    density_shift: float = -10.0
    distance_scale: float = 25.0  # sigma = distance_scale * activation(feature)
    init_scale: float = 0.1  # factors start as init_scale * N(0, 1)
    step_ratio: float = 0.5  # sample spacing in voxels
    max_samples: int = 0  # cap on samples per ray (0: none)
    colour_samples: int = 8  # colour evaluations per ray, at weight quantiles (0: threshold)
    weight_threshold: float = 1e-4  # colour_samples=0: colour only where the weight exceeds this
    alpha_mask_threshold: float = 1e-4
    tv_weight_density: float = 0.02  # times the mean squared neighbour difference of planes
    tv_weight_app: float = 0.02
    l1_weight: float = 0.0
    lr_grid: float = 0.02
    lr_network: float = 1e-3
    aabb: tuple[float, ...] = ()  # x0 y0 z0 x1 y1 z1; empty: NDC box, or [-1, 1]^3 (spherified)
    # unbounded scenes: none (the grid spans the box), linf or l2 (the box is the inner
    # region, the rest of space contracted around it; nerfcli.render.contraction)
    contraction: str = "none"
    outer_samples: int = 0  # contraction: samples per ray past the box (0: from the grid)
    # --- occupancy estimator (issue 23, nerfcli/render/occupancy.py): box and unbounded
    # scenes only (NDC keeps its path). A grid of the field's cells, updated from the exact
    # vertex density every estimator_every training steps (0: never), a moving maximum that
    # decays by estimator_decay an update; training and renders read density only in its
    # occupied cells (alpha > alpha_mask_threshold at the sample spacing there). Off (0) by
    # default: lego half-res, 5 minutes side by side at 1 thread, 16 gave 991 steps and 25.60 dB
    # held-out against 1325 steps and 25.74 dB without (bench/README.md).
    estimator_every: int = 0
    estimator_decay: float = 0.95


@dataclass(frozen=True)
class ModelConfig:
    name: str = "tensorf"  # a key of nerfcli.models.MODELS
    nerf: NerfModelConfig = field(default_factory=NerfModelConfig)
    tensorf: TensorfModelConfig = field(default_factory=TensorfModelConfig)


@dataclass(frozen=True)
class RenderConfig:
    n_samples: int = 64  # coarse (stratified) samples per ray
    n_importance: int = 64  # extra fine (inverse-CDF) samples per ray; 0 disables the fine pass
    perturb: bool = True  # stratified jitter during training
    lindisp: bool = False  # sample linearly in inverse depth
    raw_noise_std: float = 1.0  # noise added to raw density during training
    chunk: int = 2048  # rays rendered at once: at most chunk x samples points in memory


@dataclass(frozen=True)
class TrainConfig:
    iters: int = 200000
    batch_rays: int = 1024
    lr: float = 5e-4
    lr_decay_steps: int = 250000  # lr * 0.1 ** (step / lr_decay_steps)
    lr_decay_rate: float = 0.1
    seed: int = 0
    max_minutes: float = 0.0  # stop after this much wall time (0: no limit)
    # steps: decay, upsampling and the end follow the step count (exact reproduction);
    # time: they follow the fraction of max_minutes used (a run fills its budget on any
    # machine; iters then only sets the schedule's shape); auto: time when max_minutes > 0
    schedule: str = "auto"
    log_every: int = 50
    eval_every: int = 2000  # held-out PSNR and a preview render
    eval_downscale: int = 2  # held-out PSNR during training on images downscaled by this
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    grad_chunk_rays: int = 0  # >0: accumulate gradients over ray chunks of this size (CPU cache)
    # fp32; bf16 (autocast of the model's forward pass on CUDA); auto: bf16 where the GPU
    # supports it (torch.cuda.is_bf16_supported()), fp32 elsewhere (always fp32 on the CPU)
    precision: str = "auto"
    tf32: bool = True  # TF32 matmuls and convolutions inside the training loop on CUDA
    # the training rays stay on the GPU up to this size; larger ones live in pinned host memory
    # and each batch is gathered there and copied (fern: 0.16 GB; lego at 800 x 800: 3.1 GB)
    device_rays_gb: float = 2.0


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ----------------------------------------------------------------------------- dict <-> dataclass


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (tuples become lists) suitable for YAML and checkpoints."""
    out = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def _shown(value: Any) -> str:
    """A short one-line repr for error messages (values may be tensors or huge lists)."""
    try:
        text = " ".join(repr(value).split())
    except ValueError:  # an int too long to print
        text = f"an {type(value).__name__} of that size"
    return text if len(text) <= 60 else text[:57] + "..."


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {_shown(value)}")
    if annotation is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value))
            or int(value) != value
        ):
            raise ConfigError(f"{where}: expected an integer, got {_shown(value)}")
        return int(value)
    if annotation is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_shown(value)}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{where}: number too large, got an integer of that size") from None
    if annotation is dict:  # a section whose keys its owner checks (DataConfig's formats)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of keys, got {_shown(value)}")
        return dict(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_shown(value)}")
        return value
    if origin is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_shown(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    return value


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(map(str, data)) - valid)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {_shown(unknown[0])}; valid keys: {', '.join(sorted(valid))}"
        )
    kwargs = {}
    for name, value in data.items():
        annotation = hints[name]
        sub_where = f"{where}.{name}" if where != "config" else name
        if is_dataclass(annotation):
            kwargs[name] = from_dict(annotation, value, sub_where)
        else:
            kwargs[name] = _coerce(value, annotation, sub_where)
    return cls(**kwargs)


def merge_dicts(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------- YAML presets


def available_presets() -> list[str]:
    return sorted(p.stem for p in SCENES_DIR.glob("*.yaml"))


def _resolve_preset(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    candidate = SCENES_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        raise ConfigError(
            f"unknown config {str(name_or_path)!r}; presets: {', '.join(available_presets())}"
            " (or give a path to a .yaml file)"
        )
    return candidate


def read_yaml_config(name_or_path: str | Path, _seen: tuple = ()) -> dict:
    """Read a preset or YAML file into a nested dict, following `base:` (another preset)."""
    path = _resolve_preset(name_or_path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: `base:` chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    except (RecursionError, ValueError) as exc:  # nesting too deep; an int of 4300+ digits
        reason = "nested too deeply" if isinstance(exc, RecursionError) else "a value is too long"
        raise ConfigError(f"{path}: not a usable YAML config ({reason})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, render, train)")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: `base:` must name a preset")
        data = merge_dicts(read_yaml_config(base, _seen + (path.resolve(),)), data)
    return data


def parse_override(text: str) -> dict:
    """'train.lr=1e-3' -> {'train': {'lr': 0.001}}; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. train.lr=1e-3")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) < 2:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. train.lr=1e-3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError, ValueError):
        value = raw
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in "eE.") else value
        except ValueError:
            pass
    out: dict = {}
    node = out
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def build_config(
    preset: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict | None = None,
) -> Config:
    """Resolve defaults < preset (or `base` dict) < overrides into a validated Config."""
    data: dict = dict(base or {})
    if preset is not None:
        data = merge_dicts(data, read_yaml_config(preset))
    for text in overrides:
        data = merge_dicts(data, parse_override(text))
    cfg = from_dict(Config, data)
    validate(cfg)
    return cfg


def with_values(cfg: Config, section: str, **values: Any) -> Config:
    """Return cfg with some keys of one section replaced (first-class CLI flags)."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return cfg
    new = replace(cfg, **{section: replace(getattr(cfg, section), **values)})
    validate(new)
    return new


def validate(cfg: Config) -> None:
    def positive(value: float, name: str) -> None:
        if not value > 0:
            raise ConfigError(f"{name} must be positive, got {value}")

    if cfg.data.factor < 0:
        raise ConfigError(f"data.factor must be >= 1, or 0 for auto, got {cfg.data.factor}")
    # data.format is checked by the format registry (nerfcli.data.formats.plan_frame)
    for name, allowed in (
        ("background", ("auto", "white", "black", "random")),
        ("scene_type", SCENE_TYPES),
    ):
        if getattr(cfg.data, name) not in allowed:
            raise ConfigError(
                f"data.{name} must be one of {', '.join(allowed)}, got {getattr(cfg.data, name)!r}"
            )
    # The fine pass resamples the bins between inner coarse samples: it needs at least one.
    fewest = 3 if cfg.render.n_importance > 0 else 1
    if not cfg.render.n_samples >= fewest:
        raise ConfigError(
            f"render.n_samples must be at least {fewest}"
            f"{' with render.n_importance > 0' if fewest > 1 else ''}, got {cfg.render.n_samples}"
        )
    positive(cfg.render.chunk, "render.chunk")
    positive(cfg.train.batch_rays, "train.batch_rays")
    positive(cfg.train.lr, "train.lr")
    positive(cfg.train.lr_decay_steps, "train.lr_decay_steps")
    positive(cfg.train.lr_decay_rate, "train.lr_decay_rate")
    positive(cfg.train.log_every, "train.log_every")
    if cfg.data.render_frames < 0:
        raise ConfigError(
            f"data.render_frames must be >= 1, or 0 for the format's own, got {cfg.data.render_frames}"
        )
    nerf = cfg.model.nerf
    for name, low, high in (
        ("netdepth", 1, 1024),
        ("netwidth", 1, 65536),
        ("netdepth_fine", 1, 1024),
        ("netwidth_fine", 1, 65536),
        ("multires", 0, 64),
        ("multires_views", 0, 64),
    ):
        value = getattr(nerf, name)
        if not low <= value <= high:
            raise ConfigError(f"model.nerf.{name} must be in {low}..{high}, got {value}")
    for skip in nerf.skips:  # input concatenated after layer `skip`: a later layer must take it
        if skip < 0 or skip in (nerf.netdepth - 1, nerf.netdepth_fine - 1):
            raise ConfigError(
                f"model.nerf.skips: {skip} is not a layer followed by another (layers 0.."
                f"{min(nerf.netdepth, nerf.netdepth_fine) - 2} of netdepth {nerf.netdepth})"
            )
    if cfg.train.schedule not in ("auto", "steps", "time"):
        raise ConfigError(f"train.schedule must be auto, steps or time, got {cfg.train.schedule!r}")
    if cfg.train.schedule == "time" and not cfg.train.max_minutes > 0:
        raise ConfigError("train.schedule=time needs a budget: --max-minutes M")
    if cfg.train.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(
            f"train.precision must be auto, fp32 or bf16, got {cfg.train.precision!r}"
        )
    if not cfg.train.device_rays_gb >= 0:
        raise ConfigError(f"train.device_rays_gb must be >= 0, got {cfg.train.device_rays_gb}")
    if cfg.train.iters < 0:
        raise ConfigError(f"train.iters must be >= 0, got {cfg.train.iters}")
    if cfg.render.n_importance < 0:
        raise ConfigError("render.n_importance must be >= 0")
    if cfg.data.llffhold < 0:
        raise ConfigError("data.llffhold must be >= 0")
    check_value_ranges(cfg)


def check_value_ranges(cfg: Config) -> None:
    """Values no model can run with (a negative width, an infinite learning rate, a negative
    density scale): refused here, not found as NaN weights after training."""

    def check(value: float, name: str, low: float, strict: bool = False) -> None:
        ok = math.isfinite(value) and (value > low if strict else value >= low)
        if not ok:
            bound = f"more than {low:g}" if strict else f"at least {low:g}"
            raise ConfigError(f"{name} must be a finite number {bound}, got {value}")

    tensorf = cfg.model.tensorf
    for name in ("density_components", "appearance_components"):
        for value in getattr(tensorf, name):
            check(value, f"model.tensorf.{name}", 1)
    for name in ("grid_init", "grid_final"):
        for value in getattr(tensorf, name):
            check(value, f"model.tensorf.{name}", 2)
    for name in ("app_dim", "decoder_width"):
        check(getattr(tensorf, name), f"model.tensorf.{name}", 1)
    for name in ("view_pe", "feature_pe", "max_samples", "colour_samples", "outer_samples"):
        check(getattr(tensorf, name), f"model.tensorf.{name}", 0)
    for name in ("distance_scale", "init_scale", "step_ratio", "lr_grid", "lr_network"):
        check(getattr(tensorf, name), f"model.tensorf.{name}", 0, strict=True)
    for name in ("tv_weight_density", "tv_weight_app", "l1_weight"):
        check(getattr(tensorf, name), f"model.tensorf.{name}", 0)
    # any finite threshold: a negative one colours every sample (the reference tests' setting)
    check(tensorf.weight_threshold, "model.tensorf.weight_threshold", -math.inf, strict=True)
    check(tensorf.alpha_mask_threshold, "model.tensorf.alpha_mask_threshold", 0)
    check(tensorf.estimator_every, "model.tensorf.estimator_every", 0)
    check(tensorf.estimator_decay, "model.tensorf.estimator_decay", 0)
    check(tensorf.density_shift, "model.tensorf.density_shift", -math.inf, strict=True)
    for name in ("lr", "lr_decay_rate", "lr_decay_steps"):
        check(getattr(cfg.train, name), f"train.{name}", 0, strict=True)
    check(cfg.train.max_minutes, "train.max_minutes", 0)
    check(cfg.render.raw_noise_std, "render.raw_noise_std", 0)


def _upgrade_keys(data: dict) -> dict:
    """Keys renamed since a checkpoint was written: train.amp (bf16 on CUDA) became
    train.precision (true: auto, false: fp32). (The data section's are upgraded by its
    formats: nerfcli.data.formats.upgrade_data_section.)"""
    train = data.get("train") if isinstance(data, dict) else None
    if not isinstance(train, dict) or "amp" not in train:
        return data
    train = dict(train)
    amp = train.pop("amp")
    train.setdefault("precision", "auto" if amp is True else "fp32")
    return {**data, "train": train}


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def config_from_checkpoint_dict(data: dict) -> Config:
    cfg = from_dict(Config, _upgrade_keys(data), "checkpoint config")
    validate(cfg)
    return cfg


__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "NerfModelConfig",
    "TensorfModelConfig",
    "RenderConfig",
    "TrainConfig",
    "build_config",
    "with_values",
    "to_dict",
    "from_dict",
    "dump_yaml",
    "read_yaml_config",
    "available_presets",
]
