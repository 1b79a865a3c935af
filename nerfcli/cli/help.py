"""The help page of every command: two columns (the option with its value's name, then what it
does), so that at 80 columns each option's help reads as a sentence. Typer's own layout spends a
quarter of the width on a type column (`<bool>`, `<int range> [x>=1]`) and suggests
`--json true` for a flag."""

from __future__ import annotations

import click
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from typer.core import TyperArgument, TyperCommand

# The value's name after an option, by its type: `--iters N`, `--out PATH`.
METAVARS = {"int": "N", "float": "X", "path": "PATH", "str": "TEXT", "list[str]": "TEXT"}


def _metavar(param, ctx: click.Context) -> str:
    if getattr(param, "is_flag", False):
        return ""
    if param.metavar:
        return param.metavar
    shown = (param.display_type_rich(ctx=ctx) or "str").strip("<>").replace(" range", "")
    return METAVARS.get(shown, shown.upper())


def _label(param, ctx: click.Context) -> str:
    """`-c, --config TEXT`, `--half-res / --full-res`, `SCENE`."""
    if isinstance(param, TyperArgument):
        return (param.metavar or param.name or "").upper()
    names = sorted(param.opts, key=lambda opt: opt.startswith("--"))  # short form first
    text = ", ".join(names)
    if param.secondary_opts:
        text += " / " + ", ".join(param.secondary_opts)
    metavar = _metavar(param, ctx)
    return f"{text} {metavar}".rstrip()


def _default(param: click.Parameter) -> str:
    """` (default: auto)` where a valued option has a default worth printing."""
    if getattr(param, "is_flag", False) or not getattr(param, "show_default", True):
        return ""
    default = param.default
    if default is None or default == () or default == [] or callable(default):
        return ""
    if hasattr(default, "value"):  # an Enum member
        default = default.value
    return f" (default: {default})"


def _help(param: click.Parameter) -> str:
    text = escape(getattr(param, "help", None) or "")
    if isinstance(param, TyperArgument) and param.required:
        text += " (required)"
    return text + escape(_default(param))


def format_command_help(command: click.Command, ctx: click.Context, console: Console) -> None:
    """Usage, summary, one table of arguments and options, the epilog (a worked example)."""
    arguments = [_label(p, ctx) for p in command.get_params(ctx) if isinstance(p, TyperArgument)]
    usage = f"Usage: {ctx.command_path} [OPTIONS] {' '.join(arguments)}".rstrip()
    console.print(Padding(Text(usage), (1, 1, 0, 1)))
    if command.help:
        summary = command.help.split("\n\n")[0]
        console.print(Padding(" ".join(summary.split()), (1, 1, 0, 1)))
    table = Table.grid(padding=(0, 2), pad_edge=False)
    table.add_column(no_wrap=True, style="bold")
    table.add_column(overflow="fold")
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        table.add_row(_label(param, ctx), _help(param))
    console.print(Padding(table, (1, 1, 0, 2)))
    if command.epilog:
        console.print(Padding(command.epilog, (1, 1, 0, 1)))


class NerfCommand(TyperCommand):
    """A Typer command whose help is the two-column layout above."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from typer.rich_utils import _get_rich_console

        format_command_help(self, ctx, _get_rich_console())

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        """The usage line of an error as the help writes it (`[OPTIONS] SCENE`; this click
        and typer pair would print `{scene}`)."""
        arguments = [_label(p, ctx) for p in self.get_params(ctx) if isinstance(p, TyperArgument)]
        return [self.options_metavar or "[OPTIONS]", *arguments]


def summary_line(command: click.Command) -> str:
    """A command's first help paragraph on one line."""
    return " ".join((command.help or "").split("\n\n")[0].split())


def format_group_help(group: click.Group, ctx: click.Context, console: Console) -> None:
    """`nerf --help`: usage, what nerfcli is, one row per command, the options."""
    console.print(
        Padding(Text(f"Usage: {ctx.command_path} [OPTIONS] COMMAND [ARGS]..."), (1, 1, 0, 1))
    )
    if group.help:
        console.print(Padding(" ".join(group.help.split()), (1, 1, 0, 1)))
    commands = Table.grid(padding=(0, 2), pad_edge=False)
    commands.add_column(no_wrap=True, style="bold")
    commands.add_column(overflow="fold")
    for name in group.list_commands(ctx):
        commands.add_row(name, escape(summary_line(group.get_command(ctx, name))))
    console.print(Padding("Commands:", (1, 1, 0, 1)))
    console.print(Padding(commands, (0, 1, 0, 2)))
    options = Table.grid(padding=(0, 2), pad_edge=False)
    options.add_column(no_wrap=True, style="bold")
    options.add_column(overflow="fold")
    for param in group.get_params(ctx):
        options.add_row(_label(param, ctx), _help(param))
    console.print(Padding("Options:", (1, 1, 0, 1)))
    console.print(Padding(options, (0, 1, 1, 2)))
