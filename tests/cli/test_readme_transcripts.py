"""The README's console transcripts come from real runs: the cheap ones (inspect-poses, rays,
`nerf --help`) are rerun here and compared line by line with the README text, so a change of
output that is not pasted into the README fails. A README line `...` stands for any number of
lines; commands with --json (abbreviated in the README) are not compared. The real captures are
reached as `../shared/data` from a scratch folder, as the README writes them; a transcript
whose capture is absent is skipped with the reason."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CHEAP = ("nerf inspect-poses ", "nerf rays ", "nerf --help")


def transcripts() -> list[tuple[str, list[str]]]:
    """(command, the README's output lines) of every cheap command in a console block."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        command, lines = None, []
        for line in block.splitlines() + ["$ end"]:
            if line.startswith("$ "):
                if command is not None and command.startswith(CHEAP) and "--json" not in command:
                    found.append((command, lines))
                command, lines = line[2:], []
            elif command is not None:
                lines.append(line.rstrip())
    return found


def matches(expected: list[str], actual: list[str]) -> str | None:
    """None when `actual` is `expected` with each `...` standing for any lines; else the first
    README line not found where it should be."""
    position, skipping = 0, False
    for line in expected:
        if line.strip() == "...":
            skipping = True
            continue
        if skipping:
            while position < len(actual) and actual[position] != line:
                position += 1
        if position >= len(actual) or actual[position] != line:
            return line
        position, skipping = position + 1, False
    if not skipping and position < len(actual):
        return f"(the README stops; the command goes on with: {actual[position]!r})"
    return None


CASES = transcripts()


def test_the_readme_has_the_cheap_transcripts():
    commands = [command for command, _ in CASES]
    assert any(c.startswith("nerf inspect-poses ../shared/data/fern") for c in commands)
    assert any(c.startswith("nerf rays ") for c in commands)
    assert "nerf --help" in commands


@pytest.mark.parametrize("command, expected", CASES, ids=[c for c, _ in CASES])
def test_transcript_is_what_the_command_prints(tmp_path, command, expected):
    captures = re.findall(r"\.\./shared/data/(\w+)", command)
    for name in captures:
        if not (SHARED_DATA / name).is_dir():
            pytest.skip(f"real capture {name!r} not found at {SHARED_DATA / name}")
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)
    width = "100" if command == "nerf --help" else "200"
    env = {**os.environ, "COLUMNS": width, "PYTHONPATH": str(ROOT), "TERM": "dumb"}
    args = command.split()[1:]
    done = subprocess.run(
        [sys.executable, "-m", "nerfcli", *args],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout
    actual = [line.rstrip() for line in done.stdout.splitlines()]
    while actual and not actual[0]:
        actual.pop(0)
    while actual and not actual[-1]:
        actual.pop()
    expected = list(expected)
    while expected and not expected[-1]:
        expected.pop()
    problem = matches(expected, actual)
    assert problem is None, (
        f"README transcript of `{command}` is stale at: {problem!r}\nthe command now prints:\n"
        + "\n".join(actual)
    )
