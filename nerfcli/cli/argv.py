"""A command's own command line, rebuilt from what click parsed: every parameter the user gave
(not the defaults), in the command's own spelling. `nerf train --nproc N` hands this to each
process, so an option added to a command is forwarded without anyone listing it. (Typer
carries its own copy of click, so parameters are read by their attributes, not their class.)"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def command_args(ctx: Any, drop: Collection[str] = ()) -> list[str]:
    """The arguments of ctx's command (a click / typer Context) as given, defaults left out,
    without the parameters named in `drop`: what click parses back to the same values."""
    args: list[str] = []
    for param in ctx.command.params:
        name = param.name or ""
        source = ctx.get_parameter_source(name)
        if name in drop or source is None or source.name == "DEFAULT":
            continue
        args += spelled(param, ctx.params.get(name))
    return args


def spelled(param: Any, value: Any) -> list[str]:
    """One parameter's value on the command line (its long option spelling)."""
    if param.param_type_name == "argument":
        return [str(value)]
    option = max(param.opts, key=len)
    if param.is_flag:
        if value:
            return [option]
        return [max(param.secondary_opts, key=len)] if param.secondary_opts else []
    if param.multiple:
        return [part for item in value for part in (option, str(item))]
    return [] if value is None else [option, str(value)]


def given_flags(ctx: Any, allowed: Collection[str]) -> list[str]:
    """The options the user gave (not defaults) outside `allowed`, each in its own spelling
    (`--full-res`, `--set`): what `train --resume` refuses, read from the command itself."""
    named = []
    for param in ctx.command.params:
        name = param.name or ""
        source = ctx.get_parameter_source(name)
        if name in allowed or source is None or source.name == "DEFAULT":
            continue
        spelling = spelled(param, ctx.params.get(name))
        named.append(spelling[0] if spelling else max(param.opts, key=len))
    return named
