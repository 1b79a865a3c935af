"""The Typer application and the single error boundary.

A NerfError prints one red line on stderr and exits 1; usage errors exit 2; Ctrl-C exits 130.
Command modules import torch lazily, inside the command, so `nerf --help` stays fast.
"""

from __future__ import annotations

import sys

import click
import typer
from rich.markup import escape
from typer.core import TyperGroup

from nerfcli import __version__
from nerfcli.cli.common import console
from nerfcli.errors import NerfError


class NerfGroup(TyperGroup):
    """Click group whose invoke() is the error boundary for every command."""

    def format_help(self, ctx, formatter) -> None:
        from typer.rich_utils import _get_rich_console

        from nerfcli.cli.help import format_group_help

        format_group_help(self, ctx, _get_rich_console())

    def invoke(self, ctx: typer.Context):
        try:
            result = super().invoke(ctx)
        except click.exceptions.Exit as exc:
            if exc.exit_code == 0:
                _leave_the_job()
            raise
        except NerfError as exc:
            message = escape(str(exc).replace("\n", " "))  # paths and hints may hold [ ]
            console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
            ctx.exit(getattr(exc, "exit_code", 1))  # errors.UsageError: 2
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            ctx.exit(130)
        _leave_the_job()
        return result


def _leave_the_job() -> None:
    """Every rank of a torchrun job leaves together once its command succeeded
    (distributed.finish); nothing to do, and nothing imported, in a plain process."""
    distributed = sys.modules.get("nerfcli.training.distributed")
    if distributed is not None:
        distributed.finish()


app = typer.Typer(
    name="nerf",
    cls=NerfGroup,
    help="Neural Radiance Fields from the command line: inspect the poses of LLFF, Blender "
    "and transforms.json captures, build rays, train, render and evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"nerf {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Neural Radiance Fields from the command line."""


def _register() -> None:
    from nerfcli.cli import commands
    from nerfcli.cli.help import NerfCommand

    for name, func, epilog in commands.COMMANDS:
        app.command(name, cls=NerfCommand, epilog=epilog, no_args_is_help=False)(func)
    for name, group in commands.GROUPS:
        app.add_typer(group, name=name)


_register()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning from the lower layers (skipped frames, fallback cameras) as one yellow line
    on stderr, not Python's file:line form with a source line."""
    text = " ".join(str(message).split())
    console.print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)


def main() -> None:
    import warnings

    warnings.showwarning = _show_warning
    app(prog_name="nerf")
