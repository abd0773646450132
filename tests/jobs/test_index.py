"""`imgest index rebuild`: builds from embedding batches, publishes, prunes; gc and fsck leave
indexes/ alone."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from imgest.catalog.records import ImageRecord
from imgest.catalog.repo import Catalog
from imgest.cli import app
from imgest.errors import JobError
from imgest.jobs import fsck, gc
from imgest.jobs import index as job
from imgest.similarity import persist
from imgest.similarity.vectors import embedding_record
from imgest.storage.local import LocalStore
from tests.jobs.conftest import StoreImage
from tests.similarity.test_ann import DIM, clustered

pytestmark = pytest.mark.anyio
MakeRecord = Callable[..., ImageRecord]
LATER = datetime.now(UTC) + timedelta(days=30)


def generated(n: int, batch: int = 128, seed: int = 1) -> job.Batches:
    vectors = clustered(n, seed=seed)

    def batches() -> Iterator[job.Batch]:
        for start in range(0, n, batch):
            ids = [f"{k:064x}" for k in range(start, min(start + batch, n))]
            yield ids, vectors[start : start + batch], 0

    return batches


async def test_rebuild_publishes_and_keeps_the_previous_build(store: LocalStore) -> None:
    reports = [await job.rebuild(store, "net", "v1", generated(500, seed=s)) for s in (1, 2, 3)]
    first, second, third = reports
    assert first.vectors == 500 and first.bytes > 500 * DIM * 2 and first.pruned == []
    assert second.pruned == []  # the previous build stays for replicas that just read it
    assert third.pruned == [first.path]
    assert (await persist.latest(store, "net", "v1")).path == third.path  # type: ignore[union-attr]
    loaded = await persist.load_latest(store, "net", "v1")
    assert loaded is not None and len(loaded[1]) == 500 and loaded[1].threads == 1
    query = clustered(500, seed=3)[42]
    assert loaded[1].search(query, 1)[0][0] == f"{42:064x}"


async def test_rebuild_without_vectors_is_a_job_error(store: LocalStore) -> None:
    with pytest.raises(JobError, match="no embeddings"):
        await job.rebuild(store, "net", "v1", generated(0))
    assert [m async for m in store.list("indexes/")] == []


async def test_gc_and_fsck_leave_indexes_alone(
    store: LocalStore, catalog: Catalog, store_image: StoreImage
) -> None:
    await store_image(1)
    report = await job.rebuild(store, "net", "v1", generated(200))
    before = sorted([m.path async for m in store.list("indexes/")])
    assert before == [report.path, "indexes/net/v1/latest.json"]
    swept = await gc.run(store, catalog, grace=timedelta(0), now=LATER)
    assert swept.deleted == 0 and swept.unrecognized == 0
    checked = await fsck.run(store, catalog, deep=True)
    assert checked.ok
    assert sorted([m.path async for m in store.list("indexes/")]) == before


def add_embedded(catalog: Catalog, make_record: MakeRecord, version: str, n: int) -> None:
    """`n` images, each with an embedding by `version` (stored unnormalised)."""
    vectors = clustered(n, seed=5) * 3.0
    for k in range(n):
        record = replace(make_record(k), id=f"{k:064x}")
        embedding = embedding_record(
            vectors[k],
            model="net",
            model_version=version,
            pipeline="default",
            pipeline_version="v1",
            created_at=datetime.now(UTC),
        )
        assert catalog.add_image(record, embeddings=[embedding])


def test_catalog_embeddings_reads_one_version_in_batches(
    catalog: Catalog, make_record: MakeRecord
) -> None:
    add_embedded(catalog, make_record, "v1", 25)
    batches = list(job.catalog_embeddings(catalog, "v1", batch=10)())
    assert [len(ids) for ids, _, _ in batches] == [10, 10, 5]
    seqs = [seq for _, _, seq in batches]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    vectors = np.concatenate([v for _, v, _ in batches])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert list(job.catalog_embeddings(catalog, "v2")()) == []


async def test_rebuild_from_the_catalog_records_the_sequence_number(
    store: LocalStore, catalog: Catalog, make_record: MakeRecord
) -> None:
    add_embedded(catalog, make_record, "v1", 40)
    report = await job.rebuild(store, "net", "v1", job.catalog_embeddings(catalog, "v1", 16))
    pointer = await persist.latest(store, "net", "v1")
    last = catalog.embeddings_since("v1", 0, limit=100)[-1].seq
    assert report.vectors == 40 and pointer is not None and pointer.seq == last


def test_cli_rebuild_from_the_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_record: MakeRecord
) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("IMGEST_STORAGE_URL", str(tmp_path / "blobs"))
    monkeypatch.setenv("IMGEST_CATALOG_URL", url)
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    listed = runner.invoke(app, ["models", "list"])  # registers the bundled model, active
    name = listed.stdout.split()[1].split("@")[0]
    result = runner.invoke(app, ["index", "rebuild"])
    assert result.exit_code == 2 and "no embeddings" in result.stderr
    catalog = Catalog.open(url)
    try:
        version = next(version for model, version in _models(catalog) if model == name)
        add_embedded(catalog, make_record, version, 300)
    finally:
        catalog.close()
    result = runner.invoke(app, ["index", "rebuild", "--json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["vectors"] == 300
    assert (tmp_path / "blobs" / "indexes" / name / version / "latest.json").exists()
    result = runner.invoke(app, ["index", "rebuild", "--model", "nosuch"])
    assert result.exit_code == 2, result.stdout + result.stderr


def _models(catalog: Catalog) -> list[sa.Row[tuple[str, str]]]:
    with catalog.engine.connect() as conn:
        return list(conn.execute(sa.text("select name, version from models")))
