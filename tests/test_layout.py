"""The package layout STYLE.md asks for: modules of at most ~400 lines, or a reason why not."""

from __future__ import annotations

import ast
from pathlib import Path

import imgest

SRC = Path(imgest.__file__).parent
MAX_LINES = 400
REASON = "Why one long module:"


def test_a_module_over_400_lines_says_why_in_its_docstring() -> None:
    unexplained = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        lines = text.count("\n")
        if lines <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if REASON not in docstring:
            unexplained.append(f"{path.relative_to(SRC)} ({lines} lines)")
    assert unexplained == [], f"split these by concern, or say {REASON!r} in the docstring"
