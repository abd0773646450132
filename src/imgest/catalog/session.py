"""Catalog sessions: one unit of work (a read or a transaction), database failures mapped once.

Every catalog query runs inside `reading()` or `writing()`; both sit inside `guarded()`, the
one place where a database that fails or does not answer becomes CatalogUnavailable (a 503),
a value it refuses (DataError) InvalidParameter (a 422), and an IntegrityError (a duplicate
key, which callers handle) passes through as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from imgest.errors import CatalogUnavailable, InvalidParameter

T = TypeVar("T")

log = logging.getLogger(__name__)


class Database:
    """An engine and its sessions. Methods are blocking; call them from a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    @contextmanager
    def guarded(self) -> Iterator[None]:
        """Run the block; a database that fails or does not answer raises CatalogUnavailable."""
        try:
            yield
        except IntegrityError:
            raise
        except DataError as exc:
            # The database refused a value (a NUL, a number out of range): retrying the same
            # request cannot help, so it is not "unavailable, retry later".
            log.warning("catalog refused a value: %s", exc.orig if exc.orig is not None else exc)
            raise InvalidParameter(
                "A value in the request cannot be stored or searched for."
            ) from exc
        except (OperationalError, DBAPIError) as exc:
            log.warning("catalog error: %s", exc.orig if exc.orig is not None else exc)
            raise CatalogUnavailable() from exc

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads (no transaction begun), guarded."""
        with self.guarded(), self._sessions() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session in one transaction, committed when the block ends (rolled back if it
        raises), guarded."""
        with self.guarded(), self._sessions() as session, session.begin():
            yield session

    def session(self) -> Session:
        """A new, unguarded ORM session (run it under `guarded()` or `guard`)."""
        return self._sessions()

    def guard(self, fn: Callable[[], T]) -> T:
        """Run `fn` under `guarded()`."""
        with self.guarded():
            return fn()

    def transact(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` in one transaction under `writing()`."""
        with self.writing() as session:
            return fn(session)

    def ping(self) -> None:
        """Raise CatalogUnavailable unless the database answers."""
        with self.guarded(), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
