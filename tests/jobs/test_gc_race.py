"""gc with a grace of 0 run between a blob's write and its row's commit never leaves a row that
points at nothing: on-demand renditions, export and rescore (imgest.storage.once).

Deterministic: the hook runs gc exactly after the writer's put (on-demand renditions, export) or
after the workers stored a batch and before the driver records it (rescore), so gc sees the new
blob unreferenced and removes it; the writer's commit must then notice and put it back (or leave
the row out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from imgest import corpus as corpus_module
from imgest.catalog.repo import Catalog
from imgest.jobs import export, fsck, gc, rescore
from imgest.storage import once
from imgest.storage.local import LocalStore
from tests.jobs.conftest import Corpus

Files = list[tuple[str, bytes, dict[str, Any]]]


class Race:
    """gc (grace 0) against the corpus's store and catalog, and what it removed."""

    def __init__(self, corpus: Corpus) -> None:
        self.settings = corpus.settings
        self.deleted: list[str] = []

    async def gc(self) -> None:
        store = LocalStore(Path(self.settings.storage_url))
        catalog = Catalog.open(self.settings.catalog_url)
        try:
            # grace 0; `now` a second ahead so a blob written this very tick counts as old
            await gc.run(
                store,
                catalog,
                grace=timedelta(0),
                now=datetime.now(UTC) + timedelta(seconds=1),
                on_delete=lambda meta: self.deleted.append(meta.path),
            )
        finally:
            catalog.close()
            await store.close()

    def fsck_problems(self) -> list[Any]:
        async def check() -> list[Any]:
            store = LocalStore(Path(self.settings.storage_url))
            catalog = Catalog.open(self.settings.catalog_url)
            try:
                return list((await fsck.run(store, catalog, deep=True)).problems)
            finally:
                catalog.close()
                await store.close()

        return anyio.run(check)

    def after_put(self, put: Callable[..., Any]) -> Callable[..., Any]:
        """`put` (put_once), then gc, once per rendition written."""

        async def put_then_gc(store: Any, path: str, data: bytes) -> None:
            await put(store, path, data)
            if path.startswith("renditions/"):
                await self.gc()

        return put_then_gc


@pytest.fixture
def race(
    make_corpus: Callable[..., Corpus], photo_files: Files, catalog_url: str
) -> Iterator[tuple[Corpus, Race]]:
    """Two photos ingested, on SQLite and (marked postgres) PostgreSQL."""
    corpus = make_corpus(photo_files[:2], catalog_url=catalog_url)
    yield corpus, Race(corpus)


def test_on_demand_rendition(race: tuple[Corpus, Race], monkeypatch: pytest.MonkeyPatch) -> None:
    corpus, gc_race = race
    monkeypatch.setattr(corpus_module, "put_once", gc_race.after_put(once.put_once))
    r = corpus.client.get(f"/v1/images/{corpus.ids[0]}/renditions/stretch")
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    assert [p for p in gc_race.deleted if "/stretch@" in p]  # gc did take the new blob
    assert gc_race.fsck_problems() == []
    again = corpus.client.get(f"/v1/images/{corpus.ids[0]}/renditions/stretch")
    assert again.status_code == 200 and again.content == r.content


def test_export(race: tuple[Corpus, Race], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    corpus, gc_race = race
    monkeypatch.setattr(export, "put_once", gc_race.after_put(once.put_once))
    summary = export.run(corpus.settings, pipeline="pad", out=tmp_path / "out", min_score=0.0)
    assert summary.rendered == 2 and not summary.failed
    assert len([p for p in gc_race.deleted if "/pad@" in p]) == 2
    assert gc_race.fsck_problems() == []


def test_rescore(race: tuple[Corpus, Race], monkeypatch: pytest.MonkeyPatch) -> None:
    corpus, gc_race = race
    record = rescore._record

    def gc_then_record(*args: Any) -> None:
        anyio.run(gc_race.gc)  # the workers stored the batch's renditions; no row yet
        record(*args)

    monkeypatch.setattr(rescore, "_record", gc_then_record)
    summary = rescore.run(corpus.settings, pipeline="stretch", workers=0)
    assert (summary.scored, summary.failed) == (2, [])
    assert len([p for p in gc_race.deleted if "/stretch@" in p]) == 2
    assert gc_race.fsck_problems() == []
    # The renditions gc took are not recorded: the API makes them again on demand.
    r = corpus.client.get(f"/v1/images/{corpus.ids[0]}/renditions/stretch")
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
