"""Catalog sessions: outages become CatalogUnavailable, duplicates stay IntegrityError."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from imgest.catalog.session import Database
from imgest.errors import CatalogUnavailable


def test_reads_and_writes_of_an_unreachable_database_are_unavailable() -> None:
    db = Database(create_engine("sqlite:////nonexistent-imgest-dir/catalog.db"))
    with pytest.raises(CatalogUnavailable), db.reading() as session:
        session.execute(text("SELECT 1"))
    with pytest.raises(CatalogUnavailable), db.writing() as session:
        session.execute(text("SELECT 1"))
    with pytest.raises(CatalogUnavailable):
        db.ping()
    db.close()


def test_a_duplicate_key_is_left_to_the_caller_and_rolls_back(tmp_path: Path) -> None:
    db = Database(create_engine(f"sqlite:///{tmp_path / 'c.db'}"))
    with db.writing() as session:
        session.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(IntegrityError), db.writing() as session:
        session.execute(text("INSERT INTO t VALUES (2)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
    with db.reading() as session:
        assert session.execute(text("SELECT k FROM t")).scalars().all() == [1]
    db.close()
