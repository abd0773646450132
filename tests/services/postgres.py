"""A throwaway PostgreSQL 15 cluster on 127.0.0.1 for the session, and a fresh database per test.

The server binaries come from the Debian packages (`scripts/install/40-postgresql.sh`, run by
`make test-deps`); `IMGEST_TEST_PG_BIN` may name another bin directory. PostgreSQL refuses to
run as root, so under root every server command runs as the `postgres` user in a directory
that user owns. Durability settings are off (fsync, synchronous_commit): the cluster is thrown
away, and no test kills PostgreSQL itself uncleanly expecting its data to survive a power cut.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.services.imgest_server import free_port

CANDIDATE_BINS = ("/usr/lib/postgresql/15/bin",)
SERVER_USER = "postgres"


def find_bin() -> Path:
    """The directory holding initdb, pg_ctl and postgres, or fail with what to do."""
    candidates = [os.environ.get("IMGEST_TEST_PG_BIN", ""), *CANDIDATE_BINS]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    for candidate in candidates:
        if candidate and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in "
        f"{', '.join(c for c in candidates if c)}; run `make test-deps` "
        "(scripts/install/40-postgresql.sh) or set IMGEST_TEST_PG_BIN"
    )


class PostgresCluster:
    """One initdb'd cluster in a temp directory, served on a free loopback port."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="imgest-pg-"))
        if self.as_root:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._names = itertools.count()

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(f"{' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}\n{log}")

    def init(self) -> None:
        """initdb: trust authentication (loopback only), UTF-8, no locale."""
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        """Start on 127.0.0.1:<port> (socket in the cluster dir) and wait until it accepts."""
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.root}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: `fast` disconnects clients and shuts down cleanly; `immediate` aborts."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        """Whether a postmaster is serving this data directory."""
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str) -> str:
        """SQLAlchemy URL of `database` (psycopg 3 driver, TCP on loopback)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the `postgres` database."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        name = f"imgest_test_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def drop_database(self, name: str) -> None:
        """Drop `name`, disconnecting whoever still uses it."""
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def destroy(self) -> None:
        """Stop the server (if running) and remove every file of the cluster."""
        if self.running():
            with contextlib.suppress(BaseException):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL cluster, started on first use and removed at the end."""
    cluster = PostgresCluster(find_bin())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database, dropped after the test."""
    if not postgres.running():  # a fault test stopped it and failed before restarting
        postgres.start()
    name = postgres.create_database()
    yield postgres.url(name)
    if postgres.running():
        postgres.drop_database(name)
