"""Catalog: migrations, one-transaction records, duplicates, keyset pages, filters, delete.

Each test runs on SQLite and on PostgreSQL (the `catalog_url` fixture in conftest.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from imgest.catalog.db import CatalogOptions
from imgest.catalog.records import (
    Additions,
    Applied,
    ImageRecord,
    Label,
    PredictionRecord,
    RenditionRecord,
)
from imgest.catalog.repo import Catalog, ImageFilter
from imgest.errors import CatalogUnavailable, InvalidParameter
from tests.catalog.conftest import T0


def test_migrations_create_schema(catalog: Catalog) -> None:
    tables = set(inspect(catalog.engine).get_table_names())
    assert {"images", "image_tags", "renditions", "predictions", "alembic_version"} <= tables
    with catalog.engine.connect() as conn:
        if catalog.engine.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        else:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "30s"


def test_reopen_is_idempotent(catalog_url: str, make_record: Callable[..., ImageRecord]) -> None:
    url = catalog_url
    first = Catalog.open(url)
    first.add_image(make_record(1))
    first.close()
    again = Catalog.open(url)
    assert again.get_image(make_record(1).id) is not None
    again.close()


def test_roundtrip(catalog: Catalog, make_record: Callable[..., ImageRecord]) -> None:
    rec = make_record(1, tags=("kitchen", "phone"))
    assert catalog.add_image(rec) is True
    got = catalog.get_image(rec.id)
    assert got == rec
    assert got is not None and got.created_at.tzinfo is not None


def test_duplicate_adds_nothing(catalog: Catalog, make_record: Callable[..., ImageRecord]) -> None:
    rec = make_record(1, tags=("a",))
    assert catalog.add_image(rec)
    changed = ImageRecord(**{**rec.__dict__, "tags": ("b",), "filename": "other.jpg"})
    assert catalog.add_image(changed) is False
    assert catalog.get_image(rec.id) == rec


def test_failed_transaction_leaves_nothing(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    rec = make_record(1)
    # duplicate tag rows fail after the images row was flushed: all of it must roll back
    bad = ImageRecord(**{**rec.__dict__, "tags": ("dup", "dup")})
    with pytest.raises(IntegrityError):
        catalog.add_image(bad)
    assert catalog.get_image(rec.id) is None


def test_keyset_pages_cover_everything_once(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    ids = []
    for n in range(23):
        # several share a timestamp: the id breaks ties
        rec = make_record(n, at=T0 + timedelta(seconds=n // 3))
        catalog.add_image(rec)
        ids.append(rec.id)
    seen: list[str] = []
    cursor = None
    while True:
        page = catalog.list_images(limit=5, cursor=cursor)
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    stamps = [catalog.get_image(i).created_at for i in seen]  # type: ignore[union-attr]
    assert stamps == sorted(stamps, reverse=True)


def test_filters(catalog: Catalog, make_record: Callable[..., ImageRecord]) -> None:
    catalog.add_image(make_record(1, at=T0, tags=("cats",), label="tabby"))
    catalog.add_image(make_record(2, at=T0 + timedelta(days=1), tags=("dogs",), label="beagle"))
    catalog.add_image(
        make_record(3, at=T0 + timedelta(days=2), tags=("cats", "dogs"), label="tabby")
    )

    def ids(**kw: object) -> list[str]:
        return [r.filename for r in catalog.list_images(where=ImageFilter(**kw)).items]  # type: ignore[arg-type]

    assert ids(tag="cats") == ["3.jpg", "1.jpg"]
    assert ids(label="beagle") == ["2.jpg"]
    assert ids(label="tabby", tag="dogs") == ["3.jpg"]
    assert ids(since=T0 + timedelta(days=1)) == ["3.jpg", "2.jpg"]
    assert ids(until=T0 + timedelta(days=1)) == ["1.jpg"]
    assert ids(tag="birds") == []


def test_label_contains_is_a_case_insensitive_part_with_wildcards_escaped(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    labels = ["tabby, tabby cat", "tiger cat", "Egyptian cat", "cattle", "50% off", "a_b"]
    for n, label in enumerate(labels, 1):
        catalog.add_image(make_record(n, at=T0 + timedelta(days=n), label=label))

    def found(part: str) -> list[str]:
        where = ImageFilter(label_contains=part)
        return [r.filename for r in catalog.list_images(where=where).items]

    assert found("CAT") == ["4.jpg", "3.jpg", "2.jpg", "1.jpg"]
    assert found("tabby cat") == ["1.jpg"]
    assert found(" cat") == ["3.jpg", "2.jpg", "1.jpg"]
    assert found("%") == ["5.jpg"] and found("_") == ["6.jpg"]  # literal, not wildcards
    assert found("\\") == [] and found("dog") == []
    assert catalog.count_images(ImageFilter(label_contains="cat")) == 4


def test_bad_cursor(catalog: Catalog) -> None:
    with pytest.raises(InvalidParameter):
        catalog.list_images(cursor="not-a-cursor!")


def test_delete(catalog: Catalog, make_record: Callable[..., ImageRecord]) -> None:
    rec = make_record(1, tags=("a",))
    catalog.add_image(rec)
    removed = catalog.delete_image(rec.id)
    assert removed == rec
    assert catalog.get_image(rec.id) is None
    assert catalog.delete_image(rec.id) is None
    with catalog.engine.connect() as conn:
        for table in ("image_tags", "renditions", "predictions"):
            assert conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() == 0


def test_unreachable_sqlite_database_is_catalog_unavailable(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    cat = Catalog.open(f"sqlite:///{tmp_path / 'ro' / 'c.db'}")
    cat.close()
    broken = Catalog.open(
        f"sqlite:///{tmp_path / 'missing-dir' / 'x' / 'c.db'}", migrate_schema=False
    )
    (tmp_path / "missing-dir" / "x").rmdir()
    with pytest.raises(CatalogUnavailable):
        broken.ping()
    broken.close()


# --- issue 4: keyed predictions and renditions added later, labels, updates ---------------

MakeRecord = Callable[..., ImageRecord]


def prediction(model_version: str, pipeline_version: str) -> PredictionRecord:
    return PredictionRecord(
        "m2", model_version, "tiles2x2", pipeline_version, (Label("tabby", 281, 0.7),),
        datetime.now(UTC),
    )  # fmt: skip


def test_add_prediction_is_keyed_on_image_model_and_pipeline_version(
    catalog: Catalog, make_record: MakeRecord
) -> None:
    record = make_record(1)
    catalog.add_image(record)
    assert catalog.add_prediction(record.id, prediction("mv2", "v2")) is True
    assert catalog.add_prediction(record.id, prediction("mv2", "v2")) is False
    assert catalog.add_prediction(record.id, prediction("mv2", "v3")) is True
    assert catalog.add_prediction(record.id, prediction("mv", "v1")) is False  # from ingest
    found = catalog.predictions_for(record.id)
    assert [(p.model_version, p.pipeline_version) for p in found] == [
        ("mv", "v1"),
        ("mv2", "v2"),
        ("mv2", "v3"),
    ]
    assert found[1].top == (Label("tabby", 281, 0.7),) and found[1].created_at.tzinfo
    assert catalog.predictions_for("0" * 64) == []
    with pytest.raises(IntegrityError):  # no such image: not a duplicate, so it says so
        catalog.add_prediction("0" * 64, prediction("mv2", "v2"))


def test_add_rendition_once(catalog: Catalog, make_record: MakeRecord) -> None:
    record = make_record(2)
    catalog.add_image(record)
    grey = RenditionRecord("grey", "g1", "renditions/grey@g1/x.jpg", 224, 224, "image/jpeg", 9)
    assert catalog.add_rendition(record.id, grey) is True
    assert catalog.add_rendition(record.id, dataclasses.replace(grey, bytes=10)) is False
    stored = catalog.get_image(record.id)
    assert stored is not None and [r.pipeline for r in stored.renditions] == ["default", "grey"]
    assert "renditions/grey@g1/x.jpg" in stored.blob_paths()


def test_label_and_update(catalog: Catalog, make_record: MakeRecord) -> None:
    record = dataclasses.replace(make_record(3, tags=("a",)), label="tabby")
    catalog.add_image(record)
    assert catalog.get_image(record.id).label == "tabby"  # type: ignore[union-attr]
    updated = catalog.update_image(record.id, label=None, tags=["b", "b", "c"])
    assert updated is not None and updated.label is None and updated.tags == ("b", "c")
    assert updated.fields["description"] == "image 3"
    updated = catalog.update_image(record.id, description=None)
    assert updated is not None and "description" not in updated.fields
    assert updated.tags == ("b", "c")  # untouched when not given
    assert catalog.update_image("0" * 64, label="x") is None


def test_add_metadata_merges_and_never_overwrites(
    catalog: Catalog, make_record: MakeRecord
) -> None:
    record = make_record(4, tags=("a",))
    catalog.add_image(record)
    add = Additions(tags=("a", "b"), label="tabby", fields={"description": "new", "x": "1"})
    changed = catalog.add_metadata(record.id, add)
    assert changed is not None
    stored, applied = changed
    assert applied == Applied(
        tags_added=("b",), label="set", fields_set=("x",), fields_conflict=("description",)
    )
    assert stored.tags == ("a", "b") and stored.label == "tabby"
    assert stored.fields["description"] == "image 4" and stored.fields["x"] == "1"
    assert catalog.get_image(record.id) == stored
    again = catalog.add_metadata(record.id, Additions(label="dog"))
    assert again is not None and again[1].label == "conflict" and again[0].label == "tabby"
    assert catalog.add_metadata("0" * 64, add) is None


def test_a_locked_database_is_unavailable_within_the_timeout(tmp_path: Path) -> None:
    """The catalog timeout bounds waiting for another writer's lock (SQLite busy timeout)."""
    import sqlite3
    import time

    from sqlalchemy import text

    from imgest.errors import CatalogUnavailable

    def write() -> None:
        with catalog.session() as session, session.begin():
            session.execute(text("CREATE TABLE scratch (x INTEGER)"))

    path = tmp_path / "locked.db"
    catalog = Catalog.open(f"sqlite:///{path}", options=CatalogOptions(statement_timeout_s=0.3))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(CatalogUnavailable):
            catalog.guard(write)
        assert time.monotonic() - started < 5
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        catalog.close()


def test_unreachable_postgresql_is_catalog_unavailable_quickly() -> None:
    """Nothing listens on the port: refused at once, not after the connect timeout."""
    from tests.services.imgest_server import free_port

    url = f"postgresql://imgest@127.0.0.1:{free_port()}/imgest"
    broken = Catalog.open(url, migrate_schema=False)
    started = time.monotonic()
    with pytest.raises(CatalogUnavailable):
        broken.ping()
    assert time.monotonic() - started < 5
    broken.close()


def test_hostile_text_roundtrips(catalog: Catalog, make_record: Callable[..., ImageRecord]) -> None:
    """NUL, quotes and astral characters in fields: PostgreSQL's text types refuse NUL."""
    rec = make_record(1, tags=("ünïcode", "🐈"))
    odd = {"a\x00b": "x\x00y", "quote": "'\"; DROP TABLE images; --", "emoji": ["🐈", "\u2028"]}
    rec = ImageRecord(**{**rec.__dict__, "fields": odd, "filename": "ä%00b.jpg"})
    assert catalog.add_image(rec)
    assert catalog.get_image(rec.id) == rec


def test_add_results_records_new_predictions_and_renditions_once(
    catalog: Catalog, stored: Callable[[int], list[ImageRecord]]
) -> None:
    records = stored(3)
    prediction = PredictionRecord(
        model="m2",
        model_version="v" * 64,
        pipeline="tiles",
        pipeline_version="t1",
        top=(Label("tabby", 281, 0.75), Label("tiger cat", 282, 0.125)),
        created_at=datetime(2026, 2, 1, tzinfo=UTC),
    )
    rendition = RenditionRecord("tiles", "t1", "renditions/tiles/x.jpg", 224, 224, "image/jpeg", 9)
    results = [(rec.id, prediction, rendition if n == 0 else None) for n, rec in enumerate(records)]
    assert catalog.add_results(results) == 3
    assert catalog.add_results(results) == 0  # idempotent: already recorded under its key
    newer = dataclasses.replace(prediction, model_version="w" * 64)
    assert catalog.add_results([results[0], (records[1].id, newer, None)]) == 1  # only the new
    first = catalog.get_image(records[0].id)
    assert first is not None
    stored = [p for p in first.predictions if p.model == "m2"]
    assert stored == [prediction]
    assert [r for r in first.renditions if r.pipeline == "tiles"] == [rendition]
    second = catalog.get_image(records[1].id)
    assert second is not None and not [r for r in second.renditions if r.pipeline == "tiles"]


TEXT_FILTERS = [f.name for f in dataclasses.fields(ImageFilter) if "str" in str(f.type)]


@pytest.mark.parametrize("member", TEXT_FILTERS)
def test_a_nul_in_any_filter_value_is_invalid_parameter(catalog: Catalog, member: str) -> None:
    """A NUL in any text filter is a 422 before the query: PostgreSQL cannot compare with it,
    and `/gallery?label=%00` (label_contains) was a 503 catalog_unavailable there."""
    with pytest.raises(InvalidParameter, match=member):
        catalog.list_images(where=ImageFilter(**{member: "cat\x00"}))
    assert catalog.list_images(where=ImageFilter(**{member: "cat"})).items == []


def test_a_value_the_database_refuses_is_not_catalog_unavailable(catalog: Catalog) -> None:
    """A value that no retry can store (here a NUL past every check, which PostgreSQL's text
    types refuse) is a 422, not a 503 that tells the client to retry the same request."""
    if catalog.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores a NUL")

    def select_nul() -> None:
        with catalog.engine.connect() as conn:
            conn.execute(text("SELECT :v"), {"v": "a\x00"})

    with pytest.raises(InvalidParameter):
        catalog.guard(select_nul)
    catalog.ping()
