"""Catalog: migrations, one-transaction records, duplicates, keyset pages, filters, delete.

Each test runs on SQLite and on PostgreSQL (the `catalog_url` fixture in conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from imgest.catalog.records import ImageRecord
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
