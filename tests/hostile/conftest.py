"""The hostile corpus, written once per session, and one app that all its files are sent to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from imgest.app import create_app
from imgest.config import load_settings
from imgest.scoring.model import Model
from tests.hostile.make_corpus import write_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile-corpus")
    write_corpus(out)
    return out


@pytest.fixture(scope="module")
def hostile_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A memory-store app with default limits, as a server on the internet would run."""
    db = tmp_path_factory.mktemp("hostile-catalog") / "catalog.db"
    settings = load_settings(
        storage_url="memory://", catalog_url=f"sqlite:///{db}", allowed_hosts=["testserver"]
    )
    app = create_app(settings, model=Model.bundled(threads=1))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
