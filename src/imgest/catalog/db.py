"""Catalog database: engine creation (SQLite WAL settings, PostgreSQL pool) and migrations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from imgest.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant shared by every imgest process: serializes migrations across replicas.
MIGRATION_LOCK = 0x1D6E57


@dataclass(frozen=True)
class CatalogOptions:
    """How the catalog talks to a server database (PostgreSQL); SQLite ignores most of it."""

    connect_timeout_s: float = 5.0  # a down or unreachable server fails fast: 503, not a hang
    statement_timeout_s: float = 30.0  # 0 = none
    pool_size: int = 5
    pool_max_overflow: int = 10
    pool_timeout_s: float = 10.0  # wait for a free pooled connection
    lease_ttl_s: float = 300.0  # a blob lease older than this is stale (imgest.catalog.leases)


def normalize_url(url: str) -> URL:
    """Parse `url`; `postgresql://` and `postgres://` mean the psycopg (3) driver. ConfigError
    for text that is not a database URL (it is not shown: it may hold a password)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            "the catalog URL is not a database URL (e.g. sqlite:///var/catalog.db or "
            "postgresql://user@host/db)"
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def redact_url(url: str) -> str:
    """`url` with its password shown as `***` (for logs and `imgest config`)."""
    try:
        return normalize_url(url).render_as_string(hide_password=True)
    except ConfigError:  # not a URL SQLAlchemy can parse: show none of it
        return "<unparseable catalog URL>"


def check_url(url: str) -> URL:
    """`url` parsed, with its database and driver known; ConfigError otherwise (no connection
    is made: `imgest serve` checks this before it starts listening)."""
    parsed = normalize_url(url)
    try:
        parsed.get_dialect()
    except NoSuchModuleError as exc:
        raise ConfigError(f"catalog URL {redact_url(url)}: {exc}") from None
    return parsed


def make_engine(url: str, options: CatalogOptions | None = None) -> Engine:
    """An engine for `url`.

    SQLite gets WAL, full fsync, foreign keys and a busy timeout. A server database gets a
    pool that pings connections before use (a restarted server is picked up without a restart
    of ours), a bounded connect timeout and a statement timeout.
    """
    options = options or CatalogOptions()
    parsed = check_url(url)
    if parsed.get_backend_name() != "sqlite":
        return _server_engine(parsed, options)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # SQLite has no statement timeout; the same bound is how long a writer waits for the lock.
    busy_s = options.statement_timeout_s or 30.0
    engine = create_engine(url, connect_args={"timeout": busy_s, "check_same_thread": False})
    busy_ms = round(busy_s * 1000)

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


def _server_engine(url: URL, options: CatalogOptions) -> Engine:
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        # libpq counts whole seconds (and at least 2).
        connect_args["connect_timeout"] = max(2, math.ceil(options.connect_timeout_s))
        connect_args["application_name"] = "imgest"
        statement_ms = round(options.statement_timeout_s * 1000)
        connect_args["options"] = f"-c statement_timeout={statement_ms}"
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=options.pool_size,
        max_overflow=options.pool_max_overflow,
        pool_timeout=options.pool_timeout_s,
        pool_recycle=1800,  # under the idle cut-offs of common proxies and load balancers
        connect_args=connect_args,
    )


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
        # Processes starting together migrate one at a time; the later ones then find the
        # schema current.
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL statement_timeout = 0"))  # long DDL is not cut short
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        elif conn.dialect.name == "sqlite":
            # pysqlite runs DDL outside any transaction unless one is begun explicitly.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
