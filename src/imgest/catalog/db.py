"""Catalog database: engine creation (SQLite WAL settings) and Alembic migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, *, timeout_s: float = 30.0) -> Engine:
    """An engine for `url`; SQLite gets WAL, full fsync, foreign keys and a busy timeout.

    `timeout_s` bounds connecting, waiting for a pooled connection and (PostgreSQL) each
    statement; for SQLite it is the busy timeout (waiting for another writer's lock).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend != "sqlite":
        connect_args: dict[str, Any] = {}
        if backend == "postgresql":
            connect_args = {
                "connect_timeout": max(1, round(timeout_s)),
                "options": f"-c statement_timeout={round(timeout_s * 1000)}",
            }
        return create_engine(
            url, pool_pre_ping=True, pool_timeout=timeout_s, connect_args=connect_args
        )
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": timeout_s, "check_same_thread": False})
    busy_ms = round(timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we answer 2xx (NORMAL may lose it on power loss).
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()

    return engine


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic configuration pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the catalog schema up to `revision` (idempotent)."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
