"""The `imgest` command: thin over the library, clear about bad configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from imgest import __version__
from imgest.cli import app
from imgest.docs import settings_reference

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and result.stdout.strip() == __version__


def test_config_prints_effective_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGEST_MAX_FILES", "9")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["max_files"] == 9


def test_config_reference_is_the_doc() -> None:
    result = runner.invoke(app, ["config", "--reference"])
    assert result.exit_code == 0 and result.stdout == settings_reference()


def test_bad_setting_exits_2_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGEST_PORT", "eighty")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "IMGEST_PORT" in result.stderr


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'catalog.db'}"
    result = runner.invoke(app, ["migrate", "--catalog", url])
    assert result.exit_code == 0, result.output
    engine = create_engine(url)
    assert "images" in inspect(engine).get_table_names()
    engine.dispose()


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    from imgest.catalog.keys import KeyStore
    from imgest.catalog.repo import Catalog

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    created = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--scope",
            "upload",
            "--scope",
            "read",
            "--name",
            "phone",
            "--catalog",
            url,
        ],
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    key_id = token.split("_")[1]
    listed = runner.invoke(app, ["keys", "list", "--catalog", url])
    assert listed.exit_code == 0
    row = listed.stdout.strip().split("\t")
    assert (row[0], row[1], row[3], row[4]) == (key_id, "upload,read", "active", "phone")
    assert token not in listed.stdout and token.rsplit("_", 1)[1] not in listed.stdout

    catalog = Catalog.open(url)
    try:
        assert KeyStore(catalog).verify(token) is not None
        revoked = runner.invoke(app, ["keys", "revoke", key_id, "--catalog", url])
        assert revoked.exit_code == 0, revoked.output
        assert KeyStore(catalog).verify(token) is None
    finally:
        catalog.close()
    assert "active" not in runner.invoke(app, ["keys", "list", "--catalog", url]).stdout
    again = runner.invoke(app, ["keys", "revoke", key_id, "--catalog", url])
    assert again.exit_code == 1 and "no active key" in again.stderr


def test_keys_create_refuses_unknown_scopes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    result = runner.invoke(app, ["keys", "create", "--scope", "write", "--catalog", url])
    assert result.exit_code == 2 and "unknown scope 'write'" in result.stderr


@pytest.fixture
def no_binding(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """uvicorn.run replaced: these tests check the decision, never bind an address."""
    import uvicorn

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    monkeypatch.setattr("imgest.logs.configure", lambda fmt, level: None)
    return calls


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
def test_serve_refuses_a_public_address_with_auth_off(
    host: str, no_binding: list[dict[str, object]]
) -> None:
    result = runner.invoke(app, ["serve", "--host", host])
    assert result.exit_code == 2
    assert "refusing to bind" in result.stderr and "--insecure" in result.stderr
    assert no_binding == []


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--host", "0.0.0.0", "--insecure"], {}),
        (["--host", "0.0.0.0"], {"IMGEST_INSECURE": "1"}),
        (["--host", "0.0.0.0"], {"IMGEST_AUTH": "keys"}),
        (["--host", "127.0.0.2"], {}),
        (["--host", "::1"], {}),
        (["--host", "localhost"], {}),
    ],
)
def test_serve_binds_when_allowed(
    args: list[str],
    env: dict[str, str],
    no_binding: list[dict[str, object]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 0, result.output
    assert no_binding[0]["host"] == args[1]
    assert no_binding[0]["timeout_keep_alive"] == 5


@pytest.mark.postgres
def test_migrate_on_postgresql_and_an_unreachable_one(pg_url: str) -> None:
    from imgest.catalog.db import make_engine
    from tests.services.imgest_server import free_port

    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")  # the driver is implied
    result = runner.invoke(app, ["migrate", "--catalog", plain])
    assert result.exit_code == 0, result.output
    engine = make_engine(pg_url)
    assert "images" in inspect(engine).get_table_names()
    engine.dispose()
    gone = runner.invoke(app, ["migrate", "--catalog", f"postgresql://x@127.0.0.1:{free_port()}/x"])
    assert gone.exit_code == 3 and "catalog" in gone.stderr.lower()


def test_config_hides_storage_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "azure://photos?account=acct&key=c2VjcmV0a2V5%2F%2B%3D&endpoint=http%3A%2F%2Fh%2Fa"
    monkeypatch.setenv("IMGEST_STORAGE_URL", url)
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0
    shown = json.loads(result.stdout)["storage_url"]
    assert "c2VjcmV0" not in shown and "key=***" in shown
    assert "account=acct" in shown and "endpoint=http://h/a" in shown


def test_config_hides_the_catalog_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGEST_CATALOG_URL", "postgresql://imgest:s3cr3t@db:5432/imgest")
    result = runner.invoke(app, ["config"])
    shown = json.loads(result.stdout)["catalog_url"]
    assert "s3cr3t" not in shown and shown == "postgresql+psycopg://imgest:***@db:5432/imgest"
