"""The image lock: what orders the writes of one image's rows, blobs and blob leases.

A transaction-scoped PostgreSQL advisory lock on the image id; on SQLite, the database's write
lock. Blob leases (`imgest.catalog.leases`) take the lock of their path's owner: the image id
of a blob-layout path, else the path itself (model weights).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from imgest.catalog.models import ImageRow
from imgest.catalog.session import Database
from imgest.storage.paths import image_id_of


def lock_key(image_id: str) -> int:
    """A signed 64-bit key for PostgreSQL advisory locks on one image id."""
    return int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "big", signed=True)


@contextmanager
def locked(db: Database, image_id: str) -> Iterator[Session]:
    """A transaction of `db` that holds `image_id`'s lock from its start until it ends."""
    with db.writing() as session:
        lock_images(session, [image_id])
        yield session


def lock_images(session: Session | Connection, image_ids: Sequence[str]) -> None:
    """Take the locks of `image_ids` in `session`'s transaction (held until it ends), in one
    order (sorted) so that two transactions locking several images cannot deadlock."""
    bind = session if isinstance(session, Connection) else session.get_bind()
    if bind.dialect.name == "postgresql":
        for image_id in sorted(set(image_ids)):
            session.execute(select(func.pg_advisory_xact_lock(lock_key(image_id))))
    elif image_ids:
        # SQLite: any write statement takes the database write lock, rows or not.
        first = min(image_ids)
        session.execute(update(ImageRow).where(ImageRow.id == first).values(id=ImageRow.id))


def owner_of(path: str) -> str:
    """Whose lock orders the leases of `path`: its image id, or the path itself."""
    return image_id_of(path) or path


def lock_paths(session: Session, paths: Sequence[str]) -> None:
    """Take the locks that order blob leases on `paths` (held until the transaction ends)."""
    lock_images(session, [owner_of(p) for p in paths])
