"""The write path: no blob-store call while a catalog transaction is open, for every writer
(ingest, on-demand renditions, export, rescore, the model registry) and every deleter (image
delete, model removal, gc)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import Engine, event

from imgest.jobs import export, gc, rescore
from imgest.runtime import Runtime
from imgest.storage.base import BlobMeta, BlobStore
from tests.jobs.conftest import Corpus
from tests.scoring.test_registry import spec
from tests.scoring.tiny_models import tiny_classifier

Files = list[tuple[str, bytes, dict[str, Any]]]
CALLS = {"put", "put_many", "get", "head", "delete", "signed_url"}


class Transactions:
    """Catalog transactions open in this process (engine events), and every blob-store call,
    with those made while one was open. The writers run one at a time in these tests, so an
    open transaction at a store call is the caller's own."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.calls: list[str] = []
        self.inside: list[str] = []

    def begin(self, conn: Any) -> None:
        with self.lock:
            self.open += 1

    def end(self, conn: Any) -> None:
        with self.lock:
            self.open -= 1

    def store_call(self, name: str, path: object) -> None:
        with self.lock:
            self.calls.append(name)
            if self.open > 0:
                self.inside.append(f"{name} {path}")

    def reset(self) -> None:
        self.calls.clear()
        self.inside.clear()


class Watched:
    """A BlobStore that tells `txns` about each call before making it."""

    def __init__(self, inner: BlobStore, txns: Transactions) -> None:
        self.inner = inner
        self.txns = txns

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in CALLS:
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.txns.store_call(name, args[0] if args else None)
            return await attr(*args, **kwargs)

        return call

    async def list(self, prefix: str = "") -> AsyncIterator[BlobMeta]:
        self.txns.store_call("list", prefix)
        async for meta in self.inner.list(prefix):
            yield meta


@pytest.fixture
def txns(monkeypatch: pytest.MonkeyPatch) -> Iterator[Transactions]:
    """Every engine's transactions counted; every store a Runtime opens watched."""
    watch = Transactions()
    listeners: list[tuple[str, Callable[[Any], None]]] = [
        ("begin", watch.begin),
        ("commit", watch.end),
        ("rollback", watch.end),
    ]
    for name, fn in listeners:
        event.listen(Engine, name, fn)
    open_store = Runtime.open_store
    monkeypatch.setattr(Runtime, "open_store", lambda self: Watched(open_store(self), watch))
    yield watch
    for name, fn in listeners:
        event.remove(Engine, name, fn)


@pytest.fixture
def corpus(make_corpus: Callable[..., Corpus], photo_files: Files, txns: Transactions) -> Corpus:
    """One photo ingested (through the watched store)."""
    made = make_corpus(photo_files[:1])
    txns.reset()
    return made


def outside(txns: Transactions, *expected: str) -> None:
    """The writer made its store calls (`expected` among them), none inside a transaction."""
    assert set(expected) <= set(txns.calls), txns.calls
    assert txns.inside == [], f"store calls inside a catalog transaction: {txns.inside}"


def test_ingest(corpus: Corpus, txns: Transactions, photo_files: Files) -> None:
    name, data, _ = photo_files[1]
    r = corpus.client.post("/v1/images", files=[("file", (name, data, "image/jpeg"))])
    assert r.status_code == 201, r.text
    outside(txns, "put_many")  # the upload's blobs, one batch (once.put_blobs)


def test_on_demand_rendition(corpus: Corpus, txns: Transactions) -> None:
    r = corpus.client.get(f"/v1/images/{corpus.ids[0]}/renditions/stretch")
    assert r.status_code == 200
    outside(txns, "get", "put_many")


def test_image_delete(corpus: Corpus, txns: Transactions) -> None:
    assert corpus.client.delete(f"/v1/images/{corpus.ids[0]}").status_code == 204
    outside(txns, "delete")


def test_export(corpus: Corpus, txns: Transactions, tmp_path: Path) -> None:
    summary = export.run(corpus.settings, pipeline="pad", out=tmp_path / "out", min_score=0.0)
    assert summary.rendered == 1
    outside(txns, "get", "put_many")


def test_rescore(corpus: Corpus, txns: Transactions) -> None:
    summary = rescore.run(corpus.settings, pipeline="stretch", workers=0)
    assert summary.scored == 1
    outside(txns, "get", "put_many")


def test_model_registry_add_and_remove(corpus: Corpus, txns: Transactions) -> None:
    async def add_and_remove() -> None:
        async with Runtime(corpus.settings).open() as resources:
            entry = await resources.registry.add(tiny_classifier(), spec())
            await resources.registry.remove(entry.ref)

    anyio.run(add_and_remove)
    outside(txns, "put_many", "delete")


def test_gc(corpus: Corpus, txns: Transactions) -> None:
    r = corpus.client.get(f"/v1/images/{corpus.ids[0]}/renditions/stretch")
    assert r.status_code == 200
    with Runtime(corpus.settings).catalog() as catalog:
        image = catalog.get_image(corpus.ids[0])
    assert image is not None
    path = next(r.path for r in image.renditions if r.pipeline == "stretch")
    assert corpus.client.delete(f"/v1/images/{corpus.ids[0]}").status_code == 204

    async def orphan_then_gc() -> gc.GcReport:
        runtime = Runtime(corpus.settings)
        store = runtime.open_store()
        try:
            await store.put(path, b"an orphan")  # a crashed upload's leftover
            with runtime.catalog() as catalog:
                txns.reset()
                later = datetime.now(UTC) + timedelta(seconds=1)
                return await gc.run(store, catalog, grace=timedelta(0), now=later)
        finally:
            await store.close()

    report = anyio.run(orphan_then_gc)
    assert report.deleted == 1
    outside(txns, "list", "delete")
