"""Claims in README.md and docs/*.md that the code can check: variables, routes, defaults."""

from __future__ import annotations

import re
from pathlib import Path

from imgest.app import create_app
from imgest.config import Settings, load_settings

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Read from the environment outside Settings: the client, the config loader, the test suites,
# the install scripts.
OTHER_VARIABLES = {
    "IMGEST_CONFIG",
    "IMGEST_URL",
    "IMGEST_API_KEY",
    "IMGEST_REQUIRE_GPU",
    "IMGEST_FUZZ_EXAMPLES",
    "IMGEST_EXPORT_TORCH",  # scripts/setup_export_env.sh
    "IMGEST_DB_PASSWORD",  # compose.yaml
    "_IMGEST_COMPLETE",  # Typer's shell completion (docs/cli.md)
}


def test_every_variable_the_docs_name_exists() -> None:
    known = {f"IMGEST_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
    for doc in DOCS:
        for name in re.findall(r"_?IMGEST_[A-Z0-9_]*[A-Z0-9]\b(?!_?\*)", doc.read_text()):
            assert name in known, f"{doc.name} names {name}, which nothing reads"


def test_the_scope_table_names_only_routes_that_exist() -> None:
    app = create_app(load_settings(storage_url="memory://", catalog_url="sqlite://"))
    methods = {
        method.upper()
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1/images")
        for method in operations
    }
    table = (ROOT / "docs" / "security.md").read_text().split("## API keys and scopes", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("|")]
    cells = [row.split("|")[1].replace("`", "").strip() for row in rows]
    named = [m.group(1) for c in cells if (m := re.match(r"([A-Z/]+) /v1/images", c))]
    assert named, "the scope table lists /v1/images routes"
    for group in named:
        for method in group.split("/"):
            assert method in methods, f"docs/security.md gives a scope to {method} /v1/images"


def test_security_md_tells_of_the_signed_url_redirect() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    assert "never served directly" not in text
    assert "?redirect=true" in text and "IMGEST_SIGNED_URL_TTL_S" in text


def test_micro_batching_defaults_in_model_md() -> None:
    text = (ROOT / "docs" / "model.md").read_text()
    section = text.split("## Micro-batching in the server", 1)[1]
    found = re.findall(r"`IMGEST_(BATCH_MAX_\w+)`[^(`]*\((\d+(?:\.\d+)?)", section)
    assert {name for name, _ in found} == {"BATCH_MAX_SIZE", "BATCH_MAX_WAIT_MS", "BATCH_MAX_QUEUE"}
    defaults = Settings.model_fields
    for name, value in found:
        assert float(value) == defaults[name.lower()].default, name
