"""Catalog tables: every time column is UTCDateTime, which stores and returns UTC instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import DateTime, select

import imgest.catalog.keys  # noqa: F401  (ApiKeyRow joins Base.metadata)
from imgest.catalog.idempotency import IdempotencyKeys
from imgest.catalog.models import Base, IdempotencyRow, UTCDateTime
from imgest.catalog.repo import Catalog

PLUS5 = timezone(timedelta(hours=5))


def test_every_time_column_is_utc_datetime() -> None:
    columns = [c for t in Base.metadata.tables.values() for c in t.columns]
    times = [f"{c.table.name}.{c.name}" for c in columns if isinstance(c.type, DateTime)]
    assert times == []  # a bare DateTime would hand SQLite's naive wall times back
    utc = {f"{c.table.name}.{c.name}" for c in columns if isinstance(c.type, UTCDateTime)}
    assert {"images.created_at", "predictions.created_at", "api_keys.revoked_at"} <= utc


def test_the_column_type_changes_no_ddl(catalog: Catalog) -> None:
    """The migrations' DateTime(timezone=True) columns are what the models describe."""
    with catalog.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == []


def test_times_are_stored_and_compared_as_utc_instants(catalog: Catalog) -> None:
    """An aware non-UTC time is the same instant on SQLite (which keeps wall times as text)
    as on PostgreSQL: read back in UTC, and compared with other instants in SQL."""
    keys = IdempotencyKeys(catalog, ttl=timedelta(hours=1), lock=timedelta(minutes=10))
    t0 = datetime(2026, 1, 1, 12, tzinfo=PLUS5)  # 07:00 UTC
    assert keys.claim("", "k", "f", t0).outcome == "acquired"
    with catalog.reading() as session:
        row = session.execute(select(IdempotencyRow)).scalar_one()
    assert row.created_at == t0 and row.created_at.tzinfo is UTC
    assert row.expires_at == datetime(2026, 1, 1, 8, tzinfo=UTC)
    # 07:59 UTC, given in UTC: not expired yet (as wall times, 12:00 +05 > 07:59).
    assert keys.purge(datetime(2026, 1, 1, 7, 59, tzinfo=UTC)) == 0
    assert keys.purge(datetime(2026, 1, 1, 8, tzinfo=UTC)) == 1
