"""docs/glossary.md: linked from the README, and every CLI or error-code name that uses another
word than the glossary's is listed among the names that stay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

from imgest import cli, errors
from tests.glossary import GLOSSARY, listed

ROOT = Path(__file__).resolve().parent.parent


def test_readme_links_the_glossary() -> None:
    assert "(docs/glossary.md)" in (ROOT / "README.md").read_text()
    assert GLOSSARY.is_file()


def _commands(group: Any, prefix: str = "imgest") -> list[tuple[str, Any]]:
    """Every command below `group` (Typer's click objects) with its full name."""
    found: list[tuple[str, Any]] = []
    for name, command in getattr(group, "commands", {}).items():
        found.append((f"{prefix} {name}", command))
        found += _commands(command, f"{prefix} {name}")
    return found


def test_cli_names_with_label_are_listed() -> None:
    commands = _commands(typer.main.get_command(cli.app))
    assert "imgest label" in dict(commands)
    missing = []
    for path, command in commands:
        if "label" in path.rsplit(" ", 1)[1] and not listed(path):
            missing.append(path)
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and "label" in opt and not listed(opt):
                    missing.append(f"{path} {opt}")
    assert not missing, f"name these in docs/glossary.md's 'Names that stay': {missing}"


def test_error_codes_with_label_are_listed() -> None:
    todo: list[type[errors.ImgestError]] = [errors.ImgestError]
    codes = set()
    while todo:
        cls = todo.pop()
        codes.add(cls.code)
        todo.extend(cls.__subclasses__())
    assert "invalid_label" in codes
    assert [c for c in codes if "label" in c and not listed(c)] == []
