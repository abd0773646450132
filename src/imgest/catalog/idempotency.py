"""Idempotency keys in the catalog: claim a key, store its response, replay it, expire it.

Rows live in the catalog database so that every API replica sees the same keys. A row is
"in flight" while `status` is NULL (its request is being processed) and "done" once the
response is stored. Methods are blocking; call them from a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.exc import IntegrityError

from imgest.catalog.models import IdempotencyRow
from imgest.catalog.session import Database

Outcome = Literal["acquired", "replay", "in_flight", "mismatch"]


@dataclass(frozen=True)
class StoredResponse:
    """The first response given under a key, replayed verbatim."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Claim:
    """What claiming a key found: the caller owns it now, or the earlier request's state."""

    outcome: Outcome
    response: StoredResponse | None = None


class IdempotencyKeys:
    """The idempotency_keys table: one row per (principal, key)."""

    def __init__(self, catalog: Database, *, ttl: timedelta, lock: timedelta) -> None:
        self.catalog = catalog
        self.ttl = ttl
        self.lock = lock  # an in-flight row older than this belongs to a dead process

    def claim(self, principal: str, key: str, fingerprint: str, now: datetime) -> Claim:
        """Own `key` for a new request with `fingerprint`, or report why not."""
        fresh = {
            "fingerprint": fingerprint,
            "locked_at": now,
            "status": None,
            "content_type": None,
            "body": None,
            "created_at": now,
            "expires_at": now + self.ttl,
        }
        for _ in range(3):  # the row may vanish (released) between the steps below
            try:
                with self.catalog.writing() as session:
                    session.add(IdempotencyRow(principal=principal, key=key, **fresh))
                return Claim("acquired")
            except IntegrityError:
                pass
            same_key = and_(IdempotencyRow.principal == principal, IdempotencyRow.key == key)
            reclaimable = or_(
                IdempotencyRow.expires_at <= now,
                and_(
                    IdempotencyRow.status.is_(None),
                    IdempotencyRow.locked_at <= now - self.lock,
                    IdempotencyRow.fingerprint == fingerprint,
                ),
            )
            with self.catalog.writing() as session:
                taken = session.execute(
                    update(IdempotencyRow).where(same_key, reclaimable).values(**fresh)
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    return Claim("acquired")
                row = session.get(IdempotencyRow, (principal, key))
                if row is None:
                    continue
                if row.fingerprint != fingerprint:
                    return Claim("mismatch")
                if row.status is None or row.body is None:
                    return Claim("in_flight")
                return Claim("replay", StoredResponse(row.status, row.content_type or "", row.body))
        return Claim("in_flight")

    def complete(self, principal: str, key: str, response: StoredResponse) -> None:
        """Store the final response of the request that owns `key`."""
        with self.catalog.writing() as session:
            session.execute(
                update(IdempotencyRow)
                .where(IdempotencyRow.principal == principal, IdempotencyRow.key == key)
                .values(
                    status=response.status,
                    content_type=response.content_type,
                    body=response.body,
                    locked_at=None,
                )
            )

    def release(self, principal: str, key: str) -> None:
        """Forget an unfinished key (its request failed with 5xx): a retry runs afresh."""
        with self.catalog.writing() as session:
            session.execute(
                delete(IdempotencyRow).where(
                    IdempotencyRow.principal == principal,
                    IdempotencyRow.key == key,
                    IdempotencyRow.status.is_(None),
                )
            )

    def purge(self, now: datetime) -> int:
        """Delete expired keys; returns how many."""
        with self.catalog.writing() as session:
            gone = session.execute(delete(IdempotencyRow).where(IdempotencyRow.expires_at <= now))
            return int(gone.rowcount)  # type: ignore[attr-defined]
