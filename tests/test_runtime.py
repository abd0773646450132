"""The composition root: every entry point gets its store and catalog from imgest.runtime, so
each command honours the storage and catalog timeouts and exits with the documented code."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

import imgest
from imgest.app import create_app
from imgest.catalog.records import Label, PredictionRecord
from imgest.cli import app as cli
from imgest.config import load_settings
from imgest.errors import CatalogUnavailable
from imgest.exits import EXIT_UNAVAILABLE, EXIT_USAGE
from imgest.runtime import Runtime
from imgest.scoring.model import Model
from imgest.storage.timeout import TimeoutStore
from tests.services import hung_store
from tests.services.blackhole import blackhole

SRC = Path(imgest.__file__).parent
ROOT = Path(__file__).parent.parent

# The settings the faults run under, and how long a command may take to give up: the
# timeout plus room for a loaded machine, well under what the defaults (5 s to connect,
# 30 s per storage call) would take.
CONNECT_TIMEOUT_S = 2  # libpq's least
STORAGE_TIMEOUT_S = 0.5
CATALOG_BOUND_S = 4.5
STORAGE_BOUND_S = 4.0
SERVE_BOUND_S = 25.0  # a process of its own: Python, FastAPI and the model load first


# --- nothing but the runtime builds a store or a catalog -------------------------------------

BUILDERS = {"open_store", "TimeoutStore", "Catalog.open"}
# The runtime, and the packages that define the builders.
ALLOWED = {"runtime.py", "storage", "catalog"}


def _called(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def test_only_the_runtime_builds_stores_and_catalogs() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).parts[0] in ALLOWED:
            continue
        tree = ast.parse(path.read_text(), str(path))
        found += [
            f"{path.relative_to(SRC)}:{n.lineno} {_called(n)}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and _called(n) in BUILDERS
        ]
    assert found == []


def test_the_cli_runs_a_job_without_the_web_app(tmp_path: Path) -> None:
    # A fresh interpreter: this one has the app imported by other tests.
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from imgest.cli import app\n"
        "r = CliRunner().invoke(app, ['init'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['gc', '--grace', '0s'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.startswith(('imgest.app', 'imgest.api'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(SRC.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_worker_builds_its_store_from_the_job_settings() -> None:
    settings = load_settings(storage_url="memory://", storage_timeout_s=7)
    store = Runtime(settings).open_store()
    assert isinstance(store, TimeoutStore) and store.seconds == 7
    options = Runtime(settings).catalog_options()
    assert options.connect_timeout_s == settings.catalog_connect_timeout_s


# --- a stopped catalog or a hung store: every command gives up in time, with exit 3 ----------


@dataclass
class Place:
    """An initialized catalog and blob directory holding one photo with two prediction runs
    that disagree (so compare fetches thumbnails and fsck heads blobs)."""

    storage: str
    catalog: str
    model: str


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Place:
    root = tmp_path_factory.mktemp("runtime")
    settings = load_settings(
        storage_url=str(root / "blobs"),
        catalog_url=f"sqlite:///{root / 'catalog.db'}",
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings, model=Model.bundled(threads=1))) as client:
        r = client.post(
            "/v1/images", files=[("file", ("cat.jpg", (data_dir / "cat.jpg").read_bytes()))]
        )
        assert r.status_code == 201, r.text
        image = r.json()["images"][0]
        top = image["predictions"][0]
        catalog = client.app.state.catalog  # type: ignore[attr-defined]
        other = PredictionRecord(
            model=top["model"],
            model_version=top["model_version"],
            pipeline="other",
            pipeline_version="0123456789ab",
            top=(Label(label="not a cat", index=0, score=0.9),),
            created_at=datetime.now(UTC),
        )
        assert catalog.add_results([(image["id"], other, None)]) == 1
    return Place(settings.storage_url, settings.catalog_url, top["model"])


def _commands(place: Place, out: Path) -> dict[str, list[str]]:
    return {
        # stretch: a pipeline the photo has no prediction through yet
        "rescore": ["rescore", "--pipeline", "stretch", "--workers", "0"],
        "export": ["export", str(out), "--pipeline", "default", "--min-score", "0"],
        "compare": [
            "compare",
            f"{place.model}@other",
            f"{place.model}@default",
            "--html",
            str(out / "compare.html"),
        ],
        "gc": ["gc", "--grace", "0s", "--dry-run"],
        "fsck": ["fsck"],
    }


COMMANDS = ("rescore", "export", "compare", "gc", "fsck")


@pytest.fixture
def stopped_catalog() -> Iterator[str]:
    """A PostgreSQL URL whose server accepts connections and never answers."""
    with blackhole() as port:
        yield f"postgresql://imgest@127.0.0.1:{port}/imgest"


@pytest.fixture
def hung_storage(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(hung_store.registry, "entry_points", hung_store.registry.entry_points)
    hung_store.install()
    return f"{hung_store.SCHEME}://"


def _invoke(args: list[str], env: dict[str, str], bound: float) -> tuple[Result, float]:
    """Run the command in a thread; fail (not hang) when it outlasts twice the bound."""
    results: list[Result] = []
    thread = threading.Thread(
        target=lambda: results.append(CliRunner().invoke(cli, args, env=env)), daemon=True
    )
    started = time.monotonic()
    thread.start()
    thread.join(2 * bound)
    elapsed = time.monotonic() - started
    assert results, f"imgest {args[0]} still running after {elapsed:.1f} s"
    return results[0], elapsed


@pytest.mark.parametrize("command", COMMANDS)
def test_a_stopped_catalog_exits_3_in_time(
    command: str, place: Place, stopped_catalog: str, tmp_path: Path
) -> None:
    env = {
        "IMGEST_STORAGE_URL": place.storage,
        "IMGEST_CATALOG_URL": stopped_catalog,
        "IMGEST_CATALOG_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
    }
    result, elapsed = _invoke(_commands(place, tmp_path)[command], env, CATALOG_BOUND_S)
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "catalog" in result.stderr
    assert elapsed < CATALOG_BOUND_S


@pytest.mark.parametrize("command", COMMANDS)
def test_a_hung_store_exits_3_in_time(
    command: str, place: Place, hung_storage: str, tmp_path: Path
) -> None:
    env = {
        "IMGEST_STORAGE_URL": hung_storage,
        "IMGEST_CATALOG_URL": place.catalog,
        "IMGEST_STORAGE_TIMEOUT_S": str(STORAGE_TIMEOUT_S),
    }
    result, elapsed = _invoke(_commands(place, tmp_path)[command], env, STORAGE_BOUND_S)
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert elapsed < STORAGE_BOUND_S


def _serve(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tests.services.hung_store", "serve", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{SRC.parent}{os.pathsep}{ROOT}", **env},
        capture_output=True,
        text=True,
        timeout=2 * SERVE_BOUND_S,
    )
    return done, time.monotonic() - started


def test_serve_gives_up_on_a_stopped_catalog_in_time(
    place: Place, stopped_catalog: str, tmp_path: Path
) -> None:
    env = {
        "IMGEST_STORAGE_URL": place.storage,
        "IMGEST_CATALOG_URL": stopped_catalog,
        "IMGEST_CATALOG_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
    }
    done, elapsed = _serve(env, tmp_path)
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr
    # The table's sentence, not uvicorn's start-up traceback (which also exits 3).
    assert done.stderr.splitlines()[-1] == f"imgest: {CatalogUnavailable.default_detail}"
    assert "Traceback" not in done.stderr
    assert elapsed < SERVE_BOUND_S


# --- a storage URL the runtime refuses: the documented exit 2 and one sentence ---------------

REFUSED_STORAGE = {
    "ftp://x": "imgest: unknown blob store scheme 'ftp'; known schemes: ",
    "s3://": "imgest: storage URL: not a s3 store URL",
}
# Every command that opens the store, beside the COMMANDS the faults above walk.
OPENS_STORAGE = (*COMMANDS, "init", "models list", "pipelines list")


@pytest.mark.parametrize("url", sorted(REFUSED_STORAGE))
@pytest.mark.parametrize("command", OPENS_STORAGE)
def test_a_refused_storage_url_exits_2_with_one_sentence(
    command: str, url: str, place: Place, tmp_path: Path
) -> None:
    args = _commands(place, tmp_path).get(command, command.split())
    env = {"IMGEST_STORAGE_URL": url, "IMGEST_CATALOG_URL": place.catalog}
    result, _ = _invoke(args, env, STORAGE_BOUND_S)
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stderr.startswith(REFUSED_STORAGE[url]), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


@pytest.mark.parametrize("url", sorted(REFUSED_STORAGE))
def test_serve_refuses_a_storage_url_before_listening(
    url: str, place: Place, tmp_path: Path
) -> None:
    """It used to print uvicorn's start-up traceback and exit 3, whatever the cause."""
    done, elapsed = _serve(
        {"IMGEST_STORAGE_URL": url, "IMGEST_CATALOG_URL": place.catalog}, tmp_path
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.splitlines()[-1].startswith(REFUSED_STORAGE[url]), done.stderr
    assert "Traceback" not in done.stderr and "Uvicorn running" not in done.stderr
    assert elapsed < SERVE_BOUND_S


def test_readyz_answers_in_time_when_the_store_hangs(place: Place, hung_storage: str) -> None:
    # The server starts (the bundled model needs no blob); its probes see the bounded store.
    settings = load_settings(
        storage_url=hung_storage,
        catalog_url=place.catalog,
        storage_timeout_s=STORAGE_TIMEOUT_S,
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings, model=Model.bundled(threads=1))) as client:
        started = time.monotonic()
        r = client.get("/readyz")
        elapsed = time.monotonic() - started
    assert r.status_code == 503
    assert r.json()["checks"]["storage"] == "unavailable: StoreTimeoutError"
    assert elapsed < STORAGE_BOUND_S
