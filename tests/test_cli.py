"""The `imgest` command: thin over the library, clear about bad configuration."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from imgest import __version__, exits
from imgest.cli import app
from imgest.docs import settings_reference
from imgest.exits import EXIT_NOT_FOUND, EXIT_USAGE

runner = CliRunner()


def test_version() -> None:
    for args in (["version"], ["--version"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and result.stdout.strip() == __version__


def test_shell_completion_is_offered() -> None:
    shown = runner.invoke(app, ["--help"]).stdout
    assert "--install-completion" in shown and "--show-completion" in shown


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o"), ("zsh", "#compdef imgest"), ("fish", "complete --command imgest")],
)
def test_a_given_shells_completion_script(shell: str, marker: str) -> None:
    # The form docs/cli.md gives: `--show-completion` ignores a shell named after it and
    # detects the one it runs under (so from `sh` it refuses), this does not.
    imgest = Path(sys.executable).parent / "imgest"
    env = {**os.environ, "_IMGEST_COMPLETE": f"source_{shell}"}
    done = subprocess.run([imgest], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and marker in done.stdout, done.stderr


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


COMMANDS = _commands(typer.main.get_group(app))


def test_every_command_is_found() -> None:
    assert {"upload", "rescore", "init"} <= {c[0] for c in COMMANDS if len(c) == 1}
    assert ("models", "list") in COMMANDS and ("keys", "revoke") in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "imgest")
def test_every_help_exits_0(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout


def test_help_lists_every_exit_code_and_docs_match() -> None:
    shown = runner.invoke(app, ["--help"]).stdout
    doc = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    for code, meaning in exits.table():
        assert f"  {code}  {meaning}" in shown
        assert f"| {code} | {meaning} |" in doc, (code, meaning)


def test_every_rule_names_a_real_exception() -> None:
    import importlib

    for rule in exits.RULES:
        for name in rule.errors:
            module, _, attr = name.partition(":")
            assert issubclass(getattr(importlib.import_module(module), attr), Exception), name
    assert exits.rule_for(RuntimeError("a bug")) is None  # a bug keeps its traceback


# Every command that opens the catalog, with arguments that would otherwise let it run.
NEEDS_CATALOG = [
    ["models", "list"],
    ["models", "activate", "x"],
    ["models", "remove", "x"],
    ["pipelines", "list"],
    ["pipelines", "show", "default"],
    ["label", "0" * 64, "tabby"],
    ["keys", "list"],
    ["keys", "create", "--scope", "read"],
    ["keys", "revoke", "x"],
    ["migrate"],
    ["gc"],
    ["fsck"],
    ["rescore", "--pipeline", "default"],
    ["rescore", "--pipeline", "default", "--engine", "ray"],
    ["compare", "a@default", "b@default", "--html", "r.html"],
    ["export", "out", "--pipeline", "default"],
    ["backfill", "--long-side", "768"],
]


@pytest.mark.parametrize("args", NEEDS_CATALOG, ids=" ".join)
def test_commands_refuse_a_missing_catalog_and_create_nothing(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("IMGEST_CATALOG_URL", "IMGEST_STORAGE_URL", "IMGEST_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_NOT_FOUND, result.output
    assert f"no catalog at {tmp_path / 'var' / 'catalog.db'}" in result.stderr
    assert "IMGEST_CATALOG_URL" in result.stderr and "imgest init" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_missing_blob_directory_is_refused_too(tmp_path: Path) -> None:
    from imgest.catalog.repo import Catalog

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    Catalog.open(url).close()
    result = runner.invoke(app, ["fsck", "--catalog", url, "--storage", str(tmp_path / "nope")])
    assert result.exit_code == EXIT_NOT_FOUND
    assert f"no blob store at {tmp_path / 'nope'}" in result.stderr
    assert not (tmp_path / "nope").exists()


def test_a_bad_toml_file_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "imgest.toml"
    bad.write_text("port = [unclosed\n")
    monkeypatch.setenv("IMGEST_CONFIG", str(bad))
    for args in (["config"], ["fsck"], ["serve"]):
        result = runner.invoke(app, args)
        assert result.exit_code == EXIT_USAGE, result.output
        assert f"{bad} is not valid TOML" in result.stderr and "Traceback" not in result.output


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


def test_init_creates_the_schema_and_migrate_needs_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'catalog.db'}"
    blobs = tmp_path / "sub" / "blobs"
    refused = runner.invoke(app, ["migrate", "--catalog", url])
    assert refused.exit_code == EXIT_NOT_FOUND and "imgest init" in refused.stderr
    assert not (tmp_path / "sub").exists()
    for _ in range(2):  # a second init keeps what is there
        result = runner.invoke(app, ["init", "--catalog", url, "--storage", str(blobs)])
        assert result.exit_code == 0, result.output
        assert f"catalog {tmp_path / 'sub' / 'catalog.db'}, blobs {blobs}" in result.stdout
    assert blobs.is_dir()
    engine = create_engine(url)
    assert "images" in inspect(engine).get_table_names()
    engine.dispose()
    result = runner.invoke(app, ["migrate", "--catalog", url])
    assert result.exit_code == 0, result.output


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    from imgest.catalog.keys import KeyStore
    from imgest.catalog.repo import Catalog

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    Catalog.open(url).close()
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
    from imgest.catalog.repo import Catalog

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    Catalog.open(url).close()
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
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.INFO, logger="imgest"):  # the data locations are a log record
        result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 0, result.output
    assert no_binding[0]["host"] == args[1]
    assert f"catalog {Path.cwd() / 'var' / 'catalog.db'}, blobs " in caplog.text
    assert no_binding[0]["timeout_keep_alive"] == 5
    # X-Forwarded-For/-Proto are honoured only from a proxy on this host by default.
    assert no_binding[0]["proxy_headers"] is True
    assert no_binding[0]["forwarded_allow_ips"] == "127.0.0.1,::1"


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


HOSTILE_ARGS = {
    # client URLs and keys: once a minute of retries (rc 1) or a traceback from httpx
    "url-no-scheme": ["upload", "{cat}", "--url", "notaurl", "--retries", "1"],
    "url-ftp": ["upload", "{cat}", "--url", "ftp://x", "--retries", "1"],
    "url-unclosed-ipv6": ["upload", "{cat}", "--url", "http://[::1", "--retries", "1"],
    "api-key-not-ascii": ["upload", "{cat}", "--api-key", "ключ", "--retries", "1"],
    # settings URLs: tracebacks from SQLAlchemy and the store backends
    "catalog-unknown-dialect": ["gc", "--catalog", "garbage://"],
    "catalog-not-a-url": ["gc", "--catalog", "notaurl"],
    "catalog-bad-ipv6": ["gc", "--catalog", "postgresql://u:pw@[::1/x"],
    "storage-s3-no-bucket": ["gc", "--storage", "s3://"],
    "storage-unknown-scheme": ["gc", "--storage", "az://"],
    "storage-file-no-path": ["gc", "--storage", "file://"],
    # argument values
    "grace-overflow": ["gc", "--grace", "99999999999999999999h"],
    "csv-missing": ["label", "--from-csv", "/nonexistent/labels.csv"],
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ARGS))
def test_hostile_arguments_exit_2_with_one_line(
    case: str, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of these printed a traceback (or retried for a minute) before; now exit 2 with
    `imgest: <sentence>` or click's usage error, and nothing that looks like a traceback."""
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init"]).exit_code == 0  # the other location exists
    args = [a.replace("{cat}", str(data_dir / "cat.jpg")) for a in HOSTILE_ARGS[case]]
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_USAGE, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    assert "Traceback" not in result.output
    assert "pw" not in result.output  # a catalog URL's password is never shown


@pytest.mark.parametrize("url", ["garbage://", "postgresql+nodriver://u@h/db"])
def test_serve_refuses_a_catalog_url_of_no_known_database_before_listening(
    url: str, no_binding: list[dict[str, object]]
) -> None:
    """It used to fail inside uvicorn's lifespan: a start-up traceback and exit 3."""
    result = runner.invoke(app, ["serve", "--catalog", url])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "Can't load plugin" in result.output and not no_binding
