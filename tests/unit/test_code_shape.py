"""Issue 18's counted limits on the code itself: no function body over ~80 lines (after its
signature and docstring, so a Typer command's option list does not count) and no file over
~450 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import nerfcli

PACKAGE = Path(nerfcli.__file__).parent
MAX_BODY_LINES = 80
MAX_FILE_LINES = 450


def body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the end of the function."""
    body = function.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str) and len(body) > 1:
            body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_body_lines_counts_after_the_docstring():
    tree = ast.parse('def f(\n    a,\n):\n    """Doc.\n\n    more."""\n    x = 1\n\n    return x\n')
    assert body_lines(tree.body[0]) == 3


def test_no_function_body_over_80_lines():
    long = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = body_lines(node)
                if lines > MAX_BODY_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} {lines}")
    assert sources(), PACKAGE
    assert not long, f"function bodies over {MAX_BODY_LINES} lines: {long}"


def test_no_file_over_450_lines():
    long = [
        f"{path.relative_to(PACKAGE)} {lines}"
        for path in sources()
        if (lines := len(path.read_text().splitlines())) > MAX_FILE_LINES
    ]
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"
