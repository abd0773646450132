"""Blob leases: rows that order blob writes and deletes, so no storage call runs in a transaction.

A writer takes a 'write' lease on the paths it is about to store (`take_write_lease`), stores
them outside any transaction, and records the rows that reference them in a transaction that
first spends its lease (`spend`: the lease must still be there, or LeaseLost). A deleter (gc,
an image delete, a model removal) takes a 'delete' lease on the paths no row references and no
live write lease covers (`lease_deletes`), deletes the blobs outside any transaction, and drops
its lease (`end_lease`). Every lease change happens under the lock of the path's owner (the
image id of a blob-layout path, else the path itself: `owner_of`), which is what orders a
writer's take and spend against a deleter's take. A lease older than `ttl` is stale: whoever
meets one drops it. Why this is safe, case by case, is argued in `imgest.storage.once`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, and_, bindparam, delete, insert, select
from sqlalchemy.orm import Session

from imgest.catalog.locks import lock_images, owner_of
from imgest.catalog.models import BlobLeaseRow
from imgest.catalog.session import Database

Purpose = Literal["write", "delete"]
DEFAULT_TTL = timedelta(minutes=5)


# Built once: the first two run on every upload.
_INSERT = insert(BlobLeaseRow)
_DELETE_LEASES_ON = select(BlobLeaseRow.holder, BlobLeaseRow.taken_at).where(
    BlobLeaseRow.path.in_(bindparam("paths", expanding=True)), BlobLeaseRow.purpose == "delete"
)
_SPEND = (
    delete(BlobLeaseRow)
    .where(
        BlobLeaseRow.holder == bindparam("holder"),
        BlobLeaseRow.path.in_(bindparam("paths", expanding=True)),
        BlobLeaseRow.purpose == "write",
    )
    .returning(BlobLeaseRow.path)
)


class LeaseLost(Exception):
    """A writer's lease was gone when it came to record its rows (it was paused past the
    lease TTL and a deleter dropped it): its blobs may have been deleted since its put."""


@dataclass
class Lease:
    """One holder's lease on some paths; `spent` once a transaction that used it committed."""

    purpose: Purpose
    paths: tuple[str, ...]
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)
    spent: bool = False
    held: frozenset[str] = frozenset()  # what `spend` found still leased


def spend(session: Session, lease: Lease, *, partial: bool = False) -> set[str]:
    """In the writer's recording transaction, under the owners' locks: drop `lease` and return
    the paths it still held. Without `partial`, LeaseLost (the caller's transaction rolls back,
    the lease rows with it) unless it still held them all."""
    dropped = session.execute(_SPEND, {"holder": lease.holder, "paths": list(lease.paths)})
    held = set(dropped.scalars())
    lease.held = frozenset(held)
    if not partial and held != set(lease.paths):
        raise LeaseLost(f"lost the write lease on {sorted(set(lease.paths) - held)}")
    return held


def lease_deletes(
    session: Session, lease: Lease, paths: Sequence[str], ttl: timedelta
) -> list[str]:
    """Under the owners' locks, after the caller made sure no row references `paths`: take a
    delete lease on those no live write lease covers (stale leases are dropped); returns them."""
    now = datetime.now(UTC)
    _drop_stale(session, paths, now - ttl)
    written = set(
        session.execute(
            select(BlobLeaseRow.path).where(
                BlobLeaseRow.path.in_(list(paths)), BlobLeaseRow.purpose == "write"
            )
        ).scalars()
    )
    free = [p for p in dict.fromkeys(paths) if p not in written]
    session.add_all(_row(p, lease, now) for p in free)
    lease.paths = tuple(free)
    return free


def _drop_stale(session: Session, paths: Sequence[str], before: datetime) -> None:
    session.execute(
        delete(BlobLeaseRow).where(
            and_(BlobLeaseRow.path.in_(list(paths)), BlobLeaseRow.taken_at <= before)
        )
    )


def _row(path: str, lease: Lease, now: datetime) -> BlobLeaseRow:
    return BlobLeaseRow(path=path, holder=lease.holder, purpose=lease.purpose, taken_at=now)


class _Deleting(Exception):
    """A live delete lease covers a path a writer asked for."""


class Leases(Database):
    """Taking and dropping blob leases, each in a short transaction of its own."""

    lease_ttl: timedelta = DEFAULT_TTL

    def take_write_lease(self, paths: Sequence[str], holder: str | None = None) -> Lease | None:
        """A write lease on `paths` (for `holder`: one job's batches share one); None (nothing
        taken) while a live delete lease covers one of them: a deleter is removing that blob
        now, wait and try again."""
        lease = Lease("write", tuple(dict.fromkeys(paths)))
        if holder is not None:
            lease.holder = holder
        now = datetime.now(UTC)
        rows = [
            {"path": p, "holder": lease.holder, "purpose": "write", "taken_at": now}
            for p in lease.paths
        ]
        try:
            with self._lease_transaction() as conn:
                if conn.dialect.name != "sqlite":
                    lock_images(conn, [owner_of(p) for p in lease.paths])
                # On SQLite the insert takes the database write lock (its image lock) before
                # the look at the delete leases, which then sees every commit.
                conn.execute(_INSERT, rows)
                deletes = conn.execute(_DELETE_LEASES_ON, {"paths": list(lease.paths)}).all()
                if any(d.taken_at > now - self.lease_ttl for d in deletes):
                    raise _Deleting  # rolls the insert back
                if deletes:  # a crashed deleter's: nothing it sent is in flight any more
                    stale = {d.holder for d in deletes}
                    conn.execute(delete(BlobLeaseRow).where(BlobLeaseRow.holder.in_(stale)))
        except _Deleting:
            return None
        return lease

    def end_lease(self, lease: Lease) -> None:
        """Drop every lease of `lease`'s holder (a writer that gave up, a deleter that is
        done, a job at its end)."""
        if lease.spent:
            return
        with self._lease_transaction() as conn:
            conn.execute(delete(BlobLeaseRow).where(BlobLeaseRow.holder == lease.holder))
        lease.spent = True

    @contextmanager
    def _lease_transaction(self) -> Iterator[Connection]:
        """A transaction (Core: these run on every upload) that changes lease rows only. On
        SQLite its commit is not flushed to disk (synchronous=NORMAL instead of FULL, for
        this transaction): a lease lost to a power cut belonged to a process that died with it
        (SQLite is one machine's), a drop lost that way leaves a lease that expires, and the
        next FULL commit flushes it anyway, in order. It saves the one fsync the lease protocol
        would add to each upload."""
        sqlite = self.engine.dialect.name == "sqlite"
        with self.guarded(), self.engine.connect() as conn:
            if not sqlite:
                with conn.begin():
                    yield conn
                return
            conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
            conn.commit()
            try:
                with conn.begin():
                    yield conn
            finally:
                try:
                    conn.exec_driver_sql("PRAGMA synchronous=FULL")
                    conn.commit()
                except BaseException:
                    conn.invalidate()  # never hand a pooled connection back unsynced
                    raise

    def leased(self, paths: Sequence[str]) -> set[str]:
        """Those of `paths` a live (younger than the TTL) lease covers; reads only (gc's
        dry run reports them as a real run would leave them)."""
        if not paths:
            return set()
        since = datetime.now(UTC) - self.lease_ttl
        query = select(BlobLeaseRow.path).where(
            BlobLeaseRow.path.in_(list(paths)), BlobLeaseRow.taken_at > since
        )
        with self.reading() as session:
            return set(session.execute(query).scalars())

    def leases(self) -> list[tuple[str, str, str, datetime]]:
        """Every lease as (path, holder, purpose, taken at): for tests and `fsck`."""
        with self.reading() as session:
            rows = session.execute(select(BlobLeaseRow)).scalars()
            return [(r.path, r.holder, r.purpose, r.taken_at) for r in rows]
