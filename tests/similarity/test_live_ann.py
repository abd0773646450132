"""The server's index starts from the latest ANN build and searches exactly what came after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from imgest.catalog.records import ImageRecord
from imgest.catalog.repo import Catalog
from imgest.jobs import index as job
from imgest.scoring.model import Model
from imgest.similarity.index import ExactIndex
from imgest.similarity.live import SimilarImages
from imgest.similarity.persist import LiveIndex
from imgest.similarity.vectors import embedding_record
from imgest.storage.memory import MemoryStore
from tests.catalog.conftest import make_record

__all__ = ["make_record"]

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def model() -> Model:
    bundled = Model.bundled(threads=1)
    assert bundled.embedding_dim is not None
    return bundled


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    yield cat
    cat.close()


def embed(
    catalog: Catalog,
    make_record: Callable[..., ImageRecord],
    model: Model,
    numbers: range,
) -> npt.NDArray[np.float32]:
    dim = model.embedding_dim or 0
    vectors = np.random.default_rng(numbers.start).standard_normal((len(numbers), dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    for row, k in enumerate(numbers):
        record = replace(make_record(k), id=f"{k:064x}")
        stored = embedding_record(
            vectors[row],
            model=model.name,
            model_version=model.version,
            pipeline="default",
            pipeline_version="v1",
            created_at=datetime.now(UTC),
        )
        assert catalog.add_image(record, embeddings=[stored])
    return vectors


async def test_starts_from_the_build_and_catches_up_exactly(
    catalog: Catalog, make_record: Callable[..., ImageRecord], model: Model
) -> None:
    store = MemoryStore()
    embed(catalog, make_record, model, range(0, 60))
    batches = job.catalog_embeddings(catalog, model.version)
    await job.rebuild(store, model.name, model.version, batches)
    later = embed(catalog, make_record, model, range(60, 70))  # embedded after the build

    similar = SimilarImages(catalog, store, ann_min_vectors=50)
    current = await similar.index_for(model)
    assert current is not None and isinstance(current.index, LiveIndex)
    assert current.index.base is not None and len(current.index.base) == 60
    assert len(current.index.recent) == 10 and len(current.index) == 70  # only what came after
    found = await similar.search(model, later[3], 1)
    assert found[0].id == f"{63:064x}" and found[0].score > 0.99


async def test_below_the_threshold_or_without_a_build_it_is_exact(
    catalog: Catalog, make_record: Callable[..., ImageRecord], model: Model
) -> None:
    store = MemoryStore()
    embed(catalog, make_record, model, range(0, 20))
    exact_only = await SimilarImages(catalog, store, ann_min_vectors=50).index_for(model)
    assert exact_only is not None and isinstance(exact_only.index, ExactIndex)  # no build
    await job.rebuild(
        store, model.name, model.version, job.catalog_embeddings(catalog, model.version)
    )
    small = await SimilarImages(catalog, store, ann_min_vectors=50).index_for(model)
    assert small is not None and isinstance(small.index, ExactIndex)  # 20 < 50
    assert len(small.index) == 20


def test_the_app_searches_the_build_and_flags_a_near_duplicate(tmp_path: Path) -> None:
    """Upload, rebuild, restart: the server starts from the build and finds a re-encoded copy."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from imgest.app import create_app
    from imgest.cli import app as cli
    from imgest.config import Settings

    data = Path(__file__).parents[1] / "data"
    urls = {"storage_url": str(tmp_path / "blobs"), "catalog_url": f"sqlite:///{tmp_path}/c.db"}
    settings = Settings(**urls, ann_min_vectors=1)

    def upload(client: TestClient, name: str, kind: str) -> dict[str, object]:
        files = {"file": (name, (data / name).read_bytes(), kind)}
        answer = client.post("/v1/images", files=files)
        assert answer.status_code == 201, answer.text
        image: dict[str, object] = answer.json()["images"][0]
        return image

    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        original = upload(client, "cat.jpg", "image/jpeg")
        upload(client, "coffee.jpg", "image/jpeg")
    env = {"IMGEST_STORAGE_URL": urls["storage_url"], "IMGEST_CATALOG_URL": urls["catalog_url"]}
    rebuilt = CliRunner().invoke(cli, ["index", "rebuild"], env=env)
    assert rebuilt.exit_code == 0, rebuilt.output
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        current = client.app.state.similar._current  # type: ignore[attr-defined]
        assert isinstance(current.index, LiveIndex) and len(current.index) == 2
        copy = upload(client, "cat.png", "image/png")
    assert [m["id"] for m in copy["near_duplicates"]] == [original["id"]]  # type: ignore[index]
