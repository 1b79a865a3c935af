"""A capture format's own options: the `data.<format>` section of a config, read into the
format module's config dataclass (its CONFIG), typed and checked (nerfcli.config.from_dict
and the dataclass's `check()`; a run's config also by its `check_config(data)`)."""

from __future__ import annotations

from typing import Any

from nerfcli.config import DataConfig, from_dict


def format_options(cls: type, data: DataConfig, name: str) -> Any:
    """`data.<name>` as a `cls`: its defaults under what was given; ConfigError naming the
    key for an unknown key or a bad value."""
    options = from_dict(cls, getattr(data, name), f"data.{name}")
    check = getattr(options, "check", None)
    if check is not None:
        check()
    return options
