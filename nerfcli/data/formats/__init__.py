"""Capture formats: one module per on-disk layout, each with
    detect(root) -> bool
    plan_frame(path, cfg: DataConfig) -> FramePlan   the scene kind, factor, frame and
                                                     cameras, each with its reason
    load(path, cfg: DataConfig, load_images=True, plan=None) -> Scene   (the plan's frame)
    inspect(path, cfg: DataConfig) -> Report   inspect-poses' report of its own (summary rows,
                                               checks, --json; nerfcli.data.inspect.report)
    CONFIG                     its own options' dataclass (`data.<format>.*`), with
                               `of(data)` (typed, defaulted, checked by its `check()`) and
                               optionally `check_config(data)` (with the shared keys)
and optionally
    PRESET                     the scenes/<name>.yaml a capture gets without --config
    FRAME_OF_RENDER_PATH       an old checkpoint record's frame, by its render path
    upgrade_data(data) -> dict an old checkpoint's data section as this version reads it
    FRAME_FLAGS                the `nerf train` flag of a frame it alone provides
    every_view_data(cfg, testskip) -> DataConfig   what `nerf eval` reloads
`plan_frame` and `load_scene` pick the module by `cfg.format` or, for "auto", by what the
folder holds; a plan settled once (nerf train) is passed on to the load. Nothing outside this
package compares format names: it asks the module."""

from __future__ import annotations

import importlib
from dataclasses import fields, replace
from pathlib import Path

from nerfcli.config import DataConfig, to_dict
from nerfcli.data.plan import FramePlan
from nerfcli.data.scene import Scene
from nerfcli.errors import ConfigError, DataError, UsageError

# name -> (module, the file that marks it), in detection order
FORMATS: dict[str, tuple[str, str]] = {
    "llff": ("nerfcli.data.formats.llff", "poses_bounds.npy"),
    "blender": ("nerfcli.data.formats.blender", "transforms_train.json"),
    "transforms": ("nerfcli.data.formats.transforms", "transforms.json"),
}


def scene_root(path: str | Path) -> Path:
    """A scene folder, or the folder of a file inside it (poses_bounds.npy, a .json)."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    raise DataError(f"{path}: no such file or folder")


def detect_format(path: str | Path) -> str:
    """The format of a scene folder (or of the file given), by the file that marks it."""
    path = Path(path)
    if path.is_file():
        for name, (_, marker) in FORMATS.items():
            if path.name == marker:
                return name
        if path.name.startswith("transforms_") and path.suffix == ".json":
            return "blender"  # transforms_train.json, transforms_val.json, transforms_test.json
        if path.suffix == ".json":
            return "transforms"
        return "llff"  # any other file is read as a poses_bounds.npy (its errors name the file)
    root = scene_root(path)
    for name, (_, marker) in FORMATS.items():
        if (root / marker).is_file():
            return name
    raise DataError(
        f"{root}: no poses_bounds.npy (LLFF), transforms_train.json (Blender) or transforms.json "
        "(instant-ngp / nerfstudio) in this folder; for photos without poses run `nerf sfm` "
        "(or `nerf colmap2poses` on a COLMAP model), or point at the file"
    )


def format_module(name: str):
    if name not in FORMATS:
        raise DataError(f"unknown format {name!r}; choose {', '.join(FORMATS)} or auto")
    return importlib.import_module(FORMATS[name][0])


def options_of(name: str) -> tuple[str, ...]:
    """The keys of format `name`'s own section, `data.<name>` (its CONFIG's fields)."""
    return tuple(f.name for f in fields(format_module(name).CONFIG))


def reads_option(name: str, key: str) -> bool:
    """Whether format `name` reads the format-specific key `key` (data.<name>.<key>): what the
    commands ask before warning that an option is ignored on a capture."""
    return key in options_of(name)


def check_options(data: DataConfig, name: str) -> dict:
    """Format `name`'s section complete (its defaults under what was given), so a run records
    every value it loaded with; ConfigError for a bad key or value in any format's section
    (each typed by its format, whichever the capture is)."""
    for other in FORMATS:
        format_module(other).CONFIG.of(data)
    options = format_module(name).CONFIG.of(data)
    if hasattr(options, "check_config"):
        options.check_config(data)
    return to_dict(options)


def check_set_keys(name: str | None, overrides: list[str] | tuple[str, ...]) -> None:
    """UsageError (exit 2) for `--set data.<format>.KEY=...` on a capture of another format,
    naming the format that reads it, and for a format key given in the shared section (as
    before format sections: data.half_res), naming its new place."""
    for text in overrides:
        parts = text.split("=", 1)[0].strip().split(".")
        if len(parts) < 2 or parts[0] != "data":
            continue
        if name is not None and parts[1] in FORMATS and parts[1] != name and len(parts) > 2:
            raise UsageError(
                f"--set data.{parts[1]}.{parts[2]}: read by {parts[1]} captures only; this "
                f"capture is {name} (its own options: data.{name}.{{{','.join(options_of(name))}}})"
            )
        owner = option_owner(parts[1])
        if name is None and owner is not None and len(parts) == 2:
            raise UsageError(
                f"--set data.{parts[1]}: a {owner} capture's own option, now in its own "
                f"section; use --set data.{owner}.{parts[1]}=..."
            )


def option_owner(key: str) -> str | None:
    """The format whose own section holds `key`, if any."""
    return next((name for name in FORMATS if reads_option(name, key)), None)


def upgrade_data_section(data: dict) -> dict:
    """A checkpoint's data section as this version reads it: format keys moved from the shared
    section into their format's own (data.half_res -> data.blender.half_res), after each
    format's own upgrade of an older record (its optional `upgrade_data(section) -> section`)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name in FORMATS:
        upgrade = getattr(format_module(name), "upgrade_data", None)
        if upgrade is not None:
            out = upgrade(out)
    for key in list(out):
        owner = option_owner(key) if isinstance(key, str) else None
        if owner is not None:
            section = out.get(owner)
            out[owner] = {**(section if isinstance(section, dict) else {}), key: out.pop(key)}
    return out


def plan_frame(path: str | Path, cfg: DataConfig | None = None) -> FramePlan:
    """The frame plan of a capture under `cfg` (its format's rules; nerfcli.data.plan)."""
    cfg = cfg or DataConfig()
    if cfg.format != "auto" and cfg.format not in FORMATS:
        raise ConfigError(
            f"data.format must be one of auto, {', '.join(FORMATS)}, got {cfg.format!r}"
        )
    name = detect_format(path) if cfg.format == "auto" else cfg.format
    return format_module(name).plan_frame(Path(path), replace(cfg, format=name))


def load_scene(
    path: str | Path,
    cfg: DataConfig | None = None,
    load_images: bool = True,
    plan: FramePlan | None = None,
) -> Scene:
    """Load any supported capture into the training frame that `plan` (default: the one
    `cfg` settles) describes."""
    cfg = cfg or DataConfig()
    plan = plan or plan_frame(path, cfg)
    module = format_module(plan.format)
    return module.load(Path(path), replace(cfg, format=plan.format), load_images, plan)


def preset_of(path: str | Path) -> str:
    """The scene preset of a capture's format (scenes/<PRESET>.yaml)."""
    return format_module(detect_format(path)).PRESET


def every_view_data(name: str, cfg: DataConfig, testskip: int | None = None) -> DataConfig:
    """The data config that loads every held-out view, for `nerf eval` and `inspect-poses`
    (Blender: testskip 1 unless testskip is given)."""
    module = format_module(name)
    if hasattr(module, "every_view_data"):
        cfg = module.every_view_data(cfg, testskip)
    return replace(cfg, format=name)


def frame_flag(frame: str) -> str:
    """The `nerf train` flag that asks for a format's frame (its FRAME_FLAGS), for messages."""
    for name in FORMATS:
        flag = getattr(format_module(name), "FRAME_FLAGS", {}).get(frame)
        if flag is not None:
            return flag
    return f"the {frame} frame"


def frame_of_record(name: str, render_path: str) -> str:
    """The frame of a checkpoint record written before the frame plan, by its render path."""
    if name not in FORMATS:
        return "file"
    return getattr(format_module(name), "FRAME_OF_RENDER_PATH", {}).get(render_path, "file")
