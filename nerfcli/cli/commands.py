"""The list of commands: (name, function, epilog with a worked example)."""

from __future__ import annotations

COMMANDS: list = []
