"""The idempotency_keys table: claims, replay, takeover of dead requests, purge; its migration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from imgest.catalog.db import alembic_config
from imgest.catalog.idempotency import IdempotencyKeys, StoredResponse
from imgest.catalog.models import Base
from imgest.catalog.repo import Catalog


def test_claims_on_the_catalog(tmp_path: Path) -> None:
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}")
    keys = IdempotencyKeys(catalog, ttl=timedelta(hours=24), lock=timedelta(minutes=10))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert keys.claim("", "k", "f1", t0).outcome == "acquired"
    assert keys.claim("", "k", "f1", t0).outcome == "in_flight"
    assert keys.claim("", "k", "f2", t0).outcome == "mismatch"
    assert keys.claim("alice", "k", "f2", t0).outcome == "acquired"  # keys are per principal
    # The owner died: after the lock time the same request may take the key over.
    later = t0 + timedelta(minutes=11)
    assert keys.claim("", "k", "f2", later).outcome == "mismatch"
    assert keys.claim("", "k", "f1", later).outcome == "acquired"
    keys.complete("", "k", StoredResponse(201, "application/json", b"{}"))
    replay = keys.claim("", "k", "f1", later)
    assert replay.outcome == "replay" and replay.response == StoredResponse(
        201, "application/json", b"{}"
    )
    keys.release("", "k")  # only unfinished keys are released
    assert keys.claim("", "k", "f1", later).outcome == "replay"
    assert keys.purge(t0 + timedelta(hours=25)) == 2
    catalog.close()


def test_migration_matches_the_table(tmp_path: Path) -> None:
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}")
    with catalog.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diffs if "idempotency_keys" in repr(d)] == []
    cfg = alembic_config(catalog.engine)
    with catalog.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert "idempotency_keys" not in inspect(catalog.engine).get_table_names()
    catalog.close()
