"""gc with a grace of 0 racing a writer never leaves a row that points at nothing: on-demand
renditions, export and rescore (the lease protocol of imgest.storage.once).

Deterministic: hooks run gc (or age a lease, or leave a crashed gc's delete lease) at a chosen
step of the writer: between its lease and its put, between its put and its commit, after it
was paused past the lease TTL. Each case ends with `fsck --deep` clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import delete, update

from imgest.catalog.leases import Lease
from imgest.catalog.models import BlobLeaseRow, RenditionRow
from imgest.catalog.repo import Catalog
from imgest.jobs import export, fsck, gc, rescore
from imgest.storage import once
from imgest.storage.base import BlobStore
from imgest.storage.local import LocalStore
from imgest.storage.paths import rendition_path
from tests.jobs.conftest import Corpus

Files = list[tuple[str, bytes, dict[str, Any]]]
PAST_TTL = timedelta(minutes=30)  # older than any lease TTL these tests run with


class Race:
    """gc (grace 0) against the corpus's store and catalog, and what it removed."""

    def __init__(self, corpus: Corpus) -> None:
        self.settings = corpus.settings
        self.deleted: list[str] = []
        self.reports: list[gc.GcReport] = []
        self.puts: list[list[str]] = []

    def catalog(self) -> Catalog:
        return Catalog.open(self.settings.catalog_url)

    async def gc(self) -> None:
        store = LocalStore(Path(self.settings.storage_url))
        catalog = self.catalog()
        try:
            # grace 0; `now` a second ahead so a blob written this very tick counts as old
            self.reports.append(
                await gc.run(
                    store,
                    catalog,
                    grace=timedelta(0),
                    now=datetime.now(UTC) + timedelta(seconds=1),
                    on_delete=lambda meta: self.deleted.append(meta.path),
                )
            )
        finally:
            catalog.close()
            await store.close()

    def age_leases(self, purpose: str, by: timedelta = PAST_TTL) -> None:
        """Make every `purpose` lease look taken `by` ago (a paused writer, a crashed gc)."""
        catalog = self.catalog()
        try:
            with catalog.writing() as session:
                session.execute(
                    update(BlobLeaseRow)
                    .where(BlobLeaseRow.purpose == purpose)
                    .values(taken_at=datetime.now(UTC) - by)
                )
        finally:
            catalog.close()

    def fsck_problems(self) -> list[Any]:
        async def check() -> list[Any]:
            store = LocalStore(Path(self.settings.storage_url))
            catalog = self.catalog()
            try:
                return list((await fsck.run(store, catalog, deep=True)).problems)
            finally:
                catalog.close()
                await store.close()

        return anyio.run(check)

    def leases(self) -> list[Any]:
        catalog = self.catalog()
        try:
            return catalog.leases()
        finally:
            catalog.close()

    def around_put(
        self, put: Callable[..., Any], *, before: bool = False, paused: bool = False
    ) -> Callable[..., Any]:
        """`put` (once.put_blobs) with gc run before it or after it, the first time a
        rendition is written; `paused`: the writer's lease went stale before gc came."""

        async def racing(store: BlobStore, blobs: Mapping[str, bytes]) -> None:
            first = not self.puts
            self.puts.append(list(blobs))
            if first and before:
                await self.gc()
            await put(store, blobs)
            if first and not before:
                if paused:
                    self.age_leases("write")
                await self.gc()

        return racing


@pytest.fixture
def race(
    make_corpus: Callable[..., Corpus], photo_files: Files, catalog_url: str
) -> Iterator[tuple[Corpus, Race]]:
    """Two photos ingested, on SQLite and (marked postgres) PostgreSQL."""
    corpus = make_corpus(photo_files[:2], catalog_url=catalog_url, storage_timeout_s=1)
    yield corpus, Race(corpus)


def stretched(corpus: Corpus, gc_race: Race) -> bytes:
    r = corpus.client.get(f"/v1/images/{corpus.ids[0]}/renditions/stretch")
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    assert gc_race.fsck_problems() == [] and gc_race.leases() == []
    again = corpus.client.get(f"/v1/images/{corpus.ids[0]}/renditions/stretch")
    assert again.status_code == 200 and again.content == r.content
    return r.content


def test_on_demand_rendition_gc_between_put_and_commit(
    race: tuple[Corpus, Race], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, gc_race = race
    monkeypatch.setattr(once, "put_blobs", gc_race.around_put(once.put_blobs))
    stretched(corpus, gc_race)
    assert gc_race.deleted == [] and gc_race.reports[0].leased == 1  # the lease kept it
    assert len(gc_race.puts) == 1


def test_on_demand_rendition_gc_between_lease_and_put(
    race: tuple[Corpus, Race], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old orphan of the same rendition is in the store (a crashed earlier try): gc must
    not take it between the writer's lease and its put (which keeps the orphan as it is)."""
    corpus, gc_race = race
    first = stretched(corpus, gc_race)
    catalog = gc_race.catalog()
    try:  # make the rendition an orphan again: its row goes, its blob stays
        with catalog.writing() as session:
            session.execute(delete(RenditionRow).where(RenditionRow.pipeline == "stretch"))
    finally:
        catalog.close()
    monkeypatch.setattr(once, "put_blobs", gc_race.around_put(once.put_blobs, before=True))
    assert stretched(corpus, gc_race) == first
    assert gc_race.deleted == [] and gc_race.reports[0].leased == 1


def test_on_demand_rendition_writer_paused_past_the_lease_ttl(
    race: tuple[Corpus, Race], monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc drops the stale lease and deletes the blob; the writer finds its lease gone and
    stores again before it records the row."""
    corpus, gc_race = race
    monkeypatch.setattr(once, "put_blobs", gc_race.around_put(once.put_blobs, paused=True))
    stretched(corpus, gc_race)
    assert [p for p in gc_race.deleted if "/stretch@" in p]  # gc did take the blob
    assert len(gc_race.puts) == 2  # and the writer stored it again


def test_on_demand_rendition_after_gc_crashed_holding_a_delete_lease(
    race: tuple[Corpus, Race],
) -> None:
    """A live delete lease holds writers off (503 after the storage timeout); once it is
    stale they go on."""
    corpus, gc_race = race
    settings = corpus.settings
    path = rendition_path("stretch", _stretch_version(corpus), corpus.ids[0], "jpg")
    catalog = gc_race.catalog()
    try:
        crashed = Lease("delete", ())
        catalog.lease_orphans(corpus.ids[0], [path], crashed)
        assert crashed.paths == (path,)
    finally:
        catalog.close()
    r = corpus.client.get(f"/v1/images/{corpus.ids[0]}/renditions/stretch")
    assert r.status_code == 503 and r.json()["code"] == "storage_unavailable"
    assert settings.storage_timeout_s == 1
    gc_race.age_leases("delete")
    stretched(corpus, gc_race)


def _stretch_version(corpus: Corpus) -> str:
    from imgest.runtime import Runtime

    return Runtime(corpus.settings).pipelines()["stretch"].version


def test_export(race: tuple[Corpus, Race], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    corpus, gc_race = race
    monkeypatch.setattr(once, "put_blobs", gc_race.around_put(once.put_blobs, paused=True))
    summary = export.run(corpus.settings, pipeline="pad", out=tmp_path / "out", min_score=0.0)
    assert summary.rendered == 2 and not summary.failed
    assert len([p for p in gc_race.deleted if "/pad@" in p]) == 1  # the paused writer's
    assert len(gc_race.puts) == 3  # stored again
    assert gc_race.fsck_problems() == [] and gc_race.leases() == []


def test_rescore_gc_before_the_batch_commits(
    race: tuple[Corpus, Race], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, gc_race = race
    record = rescore._record

    def gc_then_record(*args: Any) -> None:
        anyio.run(gc_race.gc)  # the workers stored the batch's renditions; no row yet
        record(*args)

    monkeypatch.setattr(rescore, "_record", gc_then_record)
    summary = rescore.run(corpus.settings, pipeline="stretch", workers=0)
    assert (summary.scored, summary.failed) == (2, [])
    assert gc_race.deleted == [] and gc_race.reports[0].leased == 2  # the leases kept them
    assert gc_race.fsck_problems() == [] and gc_race.leases() == []
    catalog = gc_race.catalog()
    images = [catalog.get_image(i) for i in corpus.ids]
    catalog.close()
    assert all(i and any(r.pipeline == "stretch" for r in i.renditions) for i in images)


def test_rescore_paused_past_the_lease_ttl(
    race: tuple[Corpus, Race], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, gc_race = race
    record = rescore._record

    def pause_gc_then_record(*args: Any) -> None:
        gc_race.age_leases("write")
        anyio.run(gc_race.gc)
        record(*args)

    monkeypatch.setattr(rescore, "_record", pause_gc_then_record)
    summary = rescore.run(corpus.settings, pipeline="stretch", workers=0)
    assert (summary.scored, summary.failed) == (2, [])
    assert len([p for p in gc_race.deleted if "/stretch@" in p]) == 2
    assert gc_race.fsck_problems() == [] and gc_race.leases() == []
    # The renditions gc took are not recorded: the API makes them again on demand.
    stretched(corpus, gc_race)
