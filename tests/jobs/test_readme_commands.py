"""The README's rescore / compare / export example, run verbatim from the folder `make run`
serves (./var), on a small corpus."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imgest.cli import app
from tests.jobs.conftest import Corpus

README = Path(__file__).parents[2] / "README.md"


def readme_corpus_commands() -> list[list[str]]:
    """The `imgest ...` lines of the README's re-scoring example, as argument lists."""
    section = README.read_text().split("## Re-scoring, comparing, exporting", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    commands = [shlex.split(line) for line in lines if line]
    assert [c[:2] for c in commands] == [["imgest", "rescore"], ["imgest", "compare"],
                                         ["imgest", "export"], ["imgest", "export"]]  # fmt: skip
    return [c[1:] for c in commands]


def test_readme_rescore_example_runs_verbatim(
    make_corpus: Callable[..., Corpus],
    photo_files: list[tuple[str, bytes, dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    var = tmp_path / "var"
    make_corpus(
        photo_files[:2], storage_url=str(var / "blobs"), catalog_url=f"sqlite:///{var}/catalog.db"
    )
    monkeypatch.chdir(tmp_path)
    for name in ("IMGEST_CATALOG_URL", "IMGEST_STORAGE_URL", "IMGEST_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for args in readme_corpus_commands():
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    assert (tmp_path / "report.html").is_file()
    assert any((tmp_path / "out" / "train").iterdir())
    assert (tmp_path / "out" / "set" / "split.json").is_file()  # export --split
