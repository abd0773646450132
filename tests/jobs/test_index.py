"""`imgest index rebuild`: builds from embedding batches, publishes, prunes; gc and fsck leave
indexes/ alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from imgest.catalog.repo import Catalog
from imgest.cli import app
from imgest.errors import JobError
from imgest.jobs import fsck, gc
from imgest.jobs import index as job
from imgest.similarity import persist
from imgest.storage.local import LocalStore
from tests.jobs.conftest import StoreImage
from tests.similarity.test_ann import DIM, clustered

pytestmark = pytest.mark.anyio
LATER = datetime.now(UTC) + timedelta(days=30)


def generated(n: int, batch: int = 128, seed: int = 1) -> job.Batches:
    vectors = clustered(n, seed=seed)

    def batches() -> Iterator[job.Batch]:
        for start in range(0, n, batch):
            ids = [f"{k:064x}" for k in range(start, min(start + batch, n))]
            yield ids, vectors[start : start + batch]

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


def add_embeddings(url: str, model: str, version: str, n: int) -> None:
    """The embeddings table as the embeddings feature stores it: float16 rows per model version."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    table = sa.Table(
        "embeddings",
        meta,
        sa.Column("image_id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String, primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )
    meta.create_all(engine)
    vectors = clustered(n, seed=5) * 3.0  # stored unnormalised: the reader normalises
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {
                    "image_id": f"{k:064x}",
                    "model": model,
                    "model_version": version,
                    "vector": vectors[k].astype(np.float16).tobytes(),
                }
                for k in range(n)
            ]
            + [{"image_id": "0" * 64, "model": model, "model_version": "other", "vector": b""}],
        )
    engine.dispose()


def test_cli_rebuild_from_the_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("IMGEST_STORAGE_URL", str(tmp_path / "blobs"))
    monkeypatch.setenv("IMGEST_CATALOG_URL", url)
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    listed = runner.invoke(app, ["models", "list"])  # registers the bundled model
    name, version_prefix = listed.stdout.split()[1].split("@")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        version = conn.execute(
            sa.text("select version from models where name = :n"), {"n": name}
        ).scalar_one()
    engine.dispose()
    assert version.startswith(version_prefix)
    result = runner.invoke(app, ["index", "rebuild", "--json"])
    assert result.exit_code == 2 and "no embeddings" in result.stderr  # no table yet
    add_embeddings(url, name, version, 300)
    result = runner.invoke(app, ["index", "rebuild", "--json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert '"vectors": 300' in result.stdout
    assert (tmp_path / "blobs" / "indexes" / name / version / "latest.json").exists()
