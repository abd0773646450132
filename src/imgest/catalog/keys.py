"""API keys in the catalog: the table, minting, lookup by token, listing and revocation.

A token reads `imgest_<id>_<secret>`: the id (12 hex digits) finds the row, the secret (32
random bytes, URL-safe base64) is checked against its stored SHA-256 in constant time. Only the
hash is stored; the token is shown once, when the key is created. A fast hash is enough: the
secret has 256 bits of entropy, so there is nothing to brute-force (unlike a password).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import JSON, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from imgest.catalog.models import Base, UTCDateTime
from imgest.catalog.session import Database

SCOPES = ("upload", "read", "admin")
PREFIX = "imgest"
_TOKEN = re.compile(rf"{PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})")


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    scopes: Mapped[list[str]] = mapped_column(JSON)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


@dataclass(frozen=True)
class ApiKey:
    """A key as listed (never with its secret)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, *any_of: str) -> bool:
        """Whether the key holds at least one of these scopes (admin holds them all)."""
        return "admin" in self.scopes or any(s in self.scopes for s in any_of)


@dataclass(frozen=True)
class NewKey:
    """A freshly minted key and its token (the only time the token exists in clear)."""

    key: ApiKey
    token: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes, deduplicated in canonical order; ValueError names an unknown one."""
    wanted = set(scopes)
    unknown = wanted - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope {sorted(unknown)[0]!r}; choose from {', '.join(SCOPES)}")
    if not wanted:
        raise ValueError(f"a key needs at least one scope ({', '.join(SCOPES)})")
    return tuple(s for s in SCOPES if s in wanted)


class KeyStore:
    """API keys kept in the catalog database, so every replica sees the same keys.

    Methods are blocking; call them from a worker thread.
    """

    def __init__(self, catalog: Database) -> None:
        self.catalog = catalog

    def create(self, scopes: Iterable[str], name: str = "") -> NewKey:
        """Mint a key with these scopes; the returned token is not stored anywhere."""
        granted = check_scopes(scopes)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id=key_id,
            name=name[:200],
            scopes=list(granted),
            secret_sha256=_digest(secret),
            created_at=datetime.now(UTC),
            revoked_at=None,
        )
        with self.catalog.writing() as session:
            session.add(row)
            session.flush()
            key = _key(row)
        return NewKey(key=key, token=f"{PREFIX}_{key_id}_{secret}")

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        with self.catalog.reading() as session:
            return [_key(r) for r in session.execute(query).scalars()]

    def revoke(self, key_id: str) -> bool:
        """Revoke the key; False when no such active key exists."""
        with self.catalog.writing() as session:
            result = session.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            return bool(getattr(result, "rowcount", 0))

    def verify(self, token: str) -> ApiKey | None:
        """The active key this token belongs to, or None (unknown, malformed or revoked)."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        with self.catalog.reading() as session:
            row = session.get(ApiKeyRow, key_id)
        # Compare even when the row is missing, so timing does not tell ids apart.
        stored = row.secret_sha256 if row is not None else "0" * 64
        if not hmac.compare_digest(_digest(secret), stored) or row is None:
            return None
        if row.revoked_at is not None:
            return None
        return _key(row)
