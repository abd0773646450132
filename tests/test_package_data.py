"""Package data: every file the code reads at run time (templates, static files, the bundled
model, migrations) is in pyproject's package-data, so an installed imgest has it too."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src/imgest"
# Read only from a checkout: `alembic revision` renders new migration files from it.
CHECKOUT_ONLY = {"catalog/migrations/script.py.mako"}


def test_every_data_file_is_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["imgest"]
    shipped = {
        p.relative_to(PACKAGE).as_posix() for pattern in patterns for p in PACKAGE.glob(pattern)
    }
    data = {
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    }
    assert data - CHECKOUT_ONLY <= shipped, sorted(data - CHECKOUT_ONLY - shipped)
    assert "jobs/templates/compare.html" in shipped  # the compare report's page
