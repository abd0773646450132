"""Docs are checked against code: every error code is documented with its status."""

from __future__ import annotations

from pathlib import Path

from imgest import errors

ROOT = Path(__file__).parent.parent


def all_errors() -> list[type[errors.ImgestError]]:
    found: list[type[errors.ImgestError]] = []
    todo: list[type[errors.ImgestError]] = [errors.ImgestError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_code_is_in_the_api_doc() -> None:
    doc = (ROOT / "docs" / "api.md").read_text()
    for cls in all_errors():
        assert f"| `{cls.code}` | {cls.status} |" in doc, f"{cls.code} ({cls.status}) undocumented"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    assert "make run" in first_block and "make test" in first_block
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_security_page_lists_every_limit_with_its_default() -> None:
    from imgest.config import Settings
    from imgest.docs import LIMIT_SETTINGS, limits_table

    page = (ROOT / "docs" / "security.md").read_text()
    assert limits_table() in page, (
        "docs/security.md's limits table is stale: paste the output of "
        "`python -c 'from imgest.docs import limits_table; print(limits_table())'`"
    )
    for name in Settings.model_fields:
        if name.startswith("max_") or name.endswith("_timeout_s"):
            assert name in LIMIT_SETTINGS, f"{name} is a limit: add it to LIMIT_SETTINGS"


def test_readme_links_the_security_page() -> None:
    assert "(docs/security.md)" in (ROOT / "README.md").read_text()
