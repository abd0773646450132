"""The docs name the tests that prove their claims: every such name must be a real test."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from imgest.api import problems
from tests.test_docs import all_errors

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `tests/a/test_b.py`, `tests/a/test_b.py::test_c` or `::test_c` (same file as the last one named).
REFERENCE = re.compile(r"(tests/[\w/]+\.py)?::(test_\w+)|(tests/[\w/]+\.py)")


@cache
def functions_in(path: Path) -> frozenset[str]:
    """Every function and method defined in a Python file."""
    tree = ast.parse(path.read_text())
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, kinds))


def references(text: str) -> list[tuple[str, str | None]]:
    """(file, test name or None) for each test a text names inside backquotes, in order."""
    found: list[tuple[str, str | None]] = []
    last: str | None = None
    for code in re.findall(r"`([^`\n]+)`", text):
        for match in REFERENCE.finditer(code):
            file = match.group(1) or match.group(3)
            if file is not None:
                last = file
            assert last is not None, f"`{code}` names a test before naming its file"
            found.append((last, match.group(2)))
    return found


def test_references_resolve_the_short_form_to_the_last_file() -> None:
    text = "`tests/a.py::test_x`, `::test_y` and `tests/b.py` (`::test_z`, `::1`)"
    assert references(text) == [
        ("tests/a.py", "test_x"),
        ("tests/a.py", "test_y"),
        ("tests/b.py", None),
        ("tests/b.py", "test_z"),
    ]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_test_a_doc_names_exists(doc: Path) -> None:
    for file, name in references(doc.read_text()):
        path = ROOT / file
        assert path.is_file(), f"{doc.name} names {file}, which does not exist"
        if name is not None:
            assert name in functions_in(path), f"{doc.name} names {file}::{name}: no such test"


def test_security_md_names_many_tests() -> None:
    """Guards the check above against a pattern that silently stops matching."""
    named = [n for _, n in references((ROOT / "docs" / "security.md").read_text()) if n]
    assert len(named) >= 60


def test_the_api_error_table_names_only_real_codes_with_their_status() -> None:
    doc = (ROOT / "docs" / "api.md").read_text().split("## Error codes", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \| (\d{3}) \|", doc, flags=re.MULTILINE)
    # The errors imgest raises, and the codes the HTTP layer gives the framework's own errors.
    known = {cls.code: cls.status for cls in all_errors()}
    known |= {code: status for status, (code, _) in problems._HTTP_CODES.items()}
    assert len(rows) == len({code for code, _ in rows}), "a code is listed twice"
    for code, status in rows:
        assert code in known, f"docs/api.md lists {code}, which nothing sends"
        assert int(status) == known[code], f"docs/api.md gives {code} {status}, not {known[code]}"


def test_the_hostile_suites_are_as_large_as_security_md_says() -> None:
    from tests.hostile.make_corpus import MAKERS
    from tests.hostile.test_requests import CASES, RAW

    text = " ".join((ROOT / "docs" / "security.md").read_text().split())
    assert f"`tests/hostile/`, {len(MAKERS)} files written by" in text
    assert f"{len(CASES)} malformed multipart bodies" in text
    assert f"{len(RAW)} hostile HTTP requests over raw sockets" in text


def test_the_nginx_example_matches_the_defaults_it_names() -> None:
    from imgest.config import Settings

    text = (ROOT / "docs" / "security.md").read_text()
    nginx = text.split("```nginx", 1)[1].split("```", 1)[0]
    found = re.findall(r"^\s*\w+ (\d+)([ms]);\s*# = IMGEST_(\w+)", nginx, flags=re.MULTILINE)
    assert len(found) >= 2
    for number, unit, name in found:
        value = int(number) * (1024 * 1024 if unit == "m" else 1)
        default = Settings.model_fields[name.lower()].default
        assert value == default, f"nginx's {number}{unit} is not IMGEST_{name}'s {default}"
