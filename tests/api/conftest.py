"""An app on a memory store and a throwaway SQLite catalog, sharing one loaded model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from imgest.app import create_app
from imgest.config import load_settings
from imgest.scoring.model import Model

# The Host of a TestClient's requests: allowed explicitly, as a deployment lists its own names.
TESTSERVER = "testserver"


@pytest.fixture(scope="session")
def model() -> Model:
    return Model.bundled(threads=1)


@pytest.fixture
def make_client(tmp_path: Path, model: Model) -> Iterator[Callable[..., TestClient]]:
    opened: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        defaults = {
            "storage_url": "memory://",
            "catalog_url": f"sqlite:///{tmp_path / f'catalog{len(opened)}.db'}",
            "allowed_hosts": [TESTSERVER],
        }
        settings = load_settings(**{**defaults, **overrides})
        client = TestClient(create_app(settings, model=model), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
