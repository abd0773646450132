"""Alembic migrations apply from an empty database, on SQLite and PostgreSQL, also concurrently."""

from __future__ import annotations

import subprocess
import sys

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from imgest.catalog.db import alembic_config, make_engine, migrate
from imgest.catalog.repo import Catalog

TABLES = {"images", "image_tags", "renditions", "predictions"}


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def test_upgrade_head_from_empty_then_downgrade_and_again(catalog_url: str) -> None:
    engine = make_engine(catalog_url)
    try:
        assert inspect(engine).get_table_names() == []
        migrate(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head()
        migrate(engine)  # idempotent
        cfg = alembic_config(engine)
        command.downgrade(cfg, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        migrate(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_processes_starting_together_all_migrate(catalog_url: str) -> None:
    """Several processes opening one empty catalog at once: each succeeds, the schema is at head.

    Separate processes (as replicas are): Alembic's context is global to one process.
    """
    script = "import sys; from imgest.catalog.repo import Catalog as C; C.open(sys.argv[1]).close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", script, catalog_url], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    catalog = Catalog.open(catalog_url)
    with catalog.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head()
    catalog.close()


def test_upgrade_from_0004_adds_blob_leases_and_keeps_rows(catalog_url: str) -> None:
    """A catalog at 0004 (before blob leases) with an image in it: 0005 adds the table,
    the image stays, and a downgrade takes only the table away."""
    engine = make_engine(catalog_url)
    try:
        migrate(engine, "0004")
        assert "blob_leases" not in inspect(engine).get_table_names()
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO images (id, format, content_type, width, height, frames, "
                    "bytes, filename, original_path, fields, created_at) VALUES ('a' , 'jpeg', "
                    "'image/jpeg', 1, 1, 1, 1, 'a.jpg', 'originals/a', '{}', "
                    "'2026-01-01 00:00:00+00:00')"
                )
            )
        migrate(engine)
        columns = {c["name"] for c in inspect(engine).get_columns("blob_leases")}
        assert columns == {"path", "holder", "purpose", "taken_at"}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM images")).scalar() == 1
        command.downgrade(alembic_config(engine), "0004")
        assert "blob_leases" not in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM images")).scalar() == 1
    finally:
        engine.dispose()
