"""The `nerf` console script: the error boundary reaches the imports too.

Importing the Typer app (typer, rich, numpy) takes a few tenths of a second; a Ctrl-C then
would print a KeyboardInterrupt traceback, since the app's boundary (NerfGroup.invoke) does
not exist yet. This module imports nothing heavy, so the boundary is in place from the start.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130


def main() -> None:
    try:
        from nerfcli.cli.app import main as app_main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(INTERRUPTED) from None
    try:
        app_main()
    except KeyboardInterrupt:  # outside a command (argument parsing, help)
        sys.stderr.write("interrupted\n")
        raise SystemExit(INTERRUPTED) from None
