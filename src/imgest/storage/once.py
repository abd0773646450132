"""The one write path of blobs: store content-addressed bytes, record the row under the lock.

Every writer of a blob that a catalog row will reference (ingest, on-demand renditions, export,
rescore, the model registry) stores it with `put_once`/`put_all_once`. Storage failures, of
writes and reads alike, become StorageUnavailable here (`unavailable`, `storage_errors`): 503
for the API, exit 3 for the CLI (`imgest.exits`), nowhere else.

Why gc (`imgest.jobs.gc`) can never remove such a blob before its row commits, even with a grace
period of 0: the writer records the row in a transaction that holds the image's catalog lock
(`imgest.catalog.images.locked`) and, before that transaction commits, calls `restore_missing`,
which looks at each blob and stores again any that is gone. gc removes a blob only under the
same lock, after seeing that no row references it. So either gc's removal happened before the
writer took the lock (the writer sees the blob missing and puts it back before committing), or
gc takes the lock after the commit (it sees the row and keeps the blob). The blob's timestamp
plays no part in this: `put_once` keeps an older orphan of the same bytes as it is (it holds
the same bytes, and rewriting them would cost a second upload), and gc's grace period is only
there to spare the work of an upload in flight, not to make it correct.

The alternative, a fresh timestamp (overwrite, or a touch) and no lock, was rejected: it is safe
only while the time between the write and the commit stays under the grace period, which a slow
catalog, a paused process or `imgest gc --grace 0` breaks. The price of the lock is one storage
HEAD per blob while the image's lock is held (a missing blob, the rare case, costs a PUT too).
Model weights (`models/`) are not gc's to remove, but take the same path for the error mapping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from imgest.errors import StorageUnavailable
from imgest.storage.base import (
    BatchPutStore,
    BlobExistsError,
    BlobMeta,
    BlobNotFoundError,
    BlobStore,
    StoreError,
)

log = logging.getLogger(__name__)


async def put_once(store: BlobStore, path: str, data: bytes) -> None:
    """Store `data` at its content-addressed `path` unless it is there already.

    An existing blob is these bytes (an earlier, unfinished try, or another replica), so it
    is kept; a storage failure becomes StorageUnavailable (503).
    """
    try:
        await store.put(path, data, mode="create")
    except StoreError as exc:
        if (error := _once(exc)) is not None:
            raise error from exc


async def put_all_once(
    store: BlobStore, blobs: Sequence[tuple[str, bytes]]
) -> list[BaseException | None]:
    """put_once for every (path, data): in order, None where the blob is stored (now or
    before), else the exception (StorageUnavailable for a storage failure). A store with
    put_many (BatchPutStore) gets the whole batch in one call."""
    if not isinstance(store, BatchPutStore):
        return await asyncio.gather(
            *(put_once(store, path, data) for path, data in blobs), return_exceptions=True
        )
    try:
        results: Sequence[BlobMeta | StoreError] = await store.put_many(blobs, mode="create")
    except StoreError as exc:  # the batch's flush failed: none of it is known to be durable
        results = [exc] * len(blobs)
    return [_once(result) for result in results]


async def restore_missing(store: BlobStore, blobs: Mapping[str, bytes]) -> list[str]:
    """Under the image's catalog lock, before the row that references `blobs` commits: store
    again any of them that a concurrent gc or delete removed after our put. Returns the paths
    stored again; a storage failure is StorageUnavailable (and rolls the row back)."""
    restored = []
    for path, data in blobs.items():
        try:
            await store.head(path)
        except BlobNotFoundError:
            log.info("blob %s went away before its row committed; storing it again", path)
            await put_once(store, path, data)
            restored.append(path)
        except StoreError as exc:
            raise unavailable(exc) from exc
    return restored


async def missing(store: BlobStore, paths: Sequence[str]) -> set[str]:
    """Those of `paths` not in the store (for a writer that no longer holds the bytes: it
    leaves their rows out); a storage failure is StorageUnavailable."""
    gone = set()
    for path in paths:
        try:
            await store.head(path)
        except BlobNotFoundError:
            gone.add(path)
        except StoreError as exc:
            raise unavailable(exc) from exc
    return gone


def unavailable(exc: BaseException, detail: str | None = None) -> StorageUnavailable:
    """The StorageUnavailable (503, exit 3) that a storage failure becomes."""
    error = StorageUnavailable(detail)
    error.__cause__ = exc
    return error


@contextmanager
def storage_errors(detail: str | None = None) -> Iterator[None]:
    """A StoreError raised inside becomes StorageUnavailable (with `detail`, if given)."""
    try:
        yield
    except StoreError as exc:
        raise unavailable(exc, detail) from exc


def _once(result: BlobMeta | StoreError) -> BaseException | None:
    """What one put's result means for put_once: None (stored, or there already with the
    same bytes), else the StorageUnavailable to report."""
    if isinstance(result, BlobMeta | BlobExistsError):
        return None
    return unavailable(result)
