"""The one write path of blobs: store under a lease, record under the lock, no storage call in
a transaction; and the one place where storage errors become StorageUnavailable.

Every writer of a blob that a catalog row will reference (ingest, on-demand renditions, export,
the model registry) calls `store_and_record`; rescore, whose workers store and whose driver
records, follows the same steps itself (`imgest.jobs.rescore`). Every deleter (gc, image
delete, model removal) goes through `deleting`. Storage failures, of writes and reads alike,
become StorageUnavailable here (`unavailable`, `storage_errors`): 503 for the API, exit 3 for
the CLI (`imgest.exits`), nowhere else.

The protocol (leases are catalog rows, `imgest.catalog.leases`; every lease change takes the
lock of the path's image, `imgest.catalog.locks`):

- writer: (W1) a short transaction takes a write lease on its paths, unless a live delete
  lease covers one (then it waits, at most the storage timeout, and tries again: 503 after);
  (W2) it stores the blobs, outside any transaction; (W3) the transaction that records its
  rows first spends the lease: if the lease is gone, LeaseLost rolls it back and the writer
  starts again at W1 (a writer that no longer holds the bytes, rescore, leaves those rows
  out). On any other failure after W1 it drops its lease (best effort; leftovers expire).
- deleter: (D1) a transaction finds the paths no row references and no live write lease
  covers (stale ones are dropped) and takes a delete lease on them; (D2) it deletes the
  blobs, outside any transaction, sending no delete once its lease is older than half the
  TTL; (D3) it drops the delete lease.
- a lease older than the TTL (`catalog_lease_ttl_s`, more than twice the storage timeout, so
  no delete sent under a lease is still in flight when it expires) is stale.

Why no committed row ever points at a blob a deleter removed, whatever the grace period:

  deleter's D1 comes...       what follows
  --------------------------  ------------------------------------------------------------
  before the writer's W1      W1 waits until D3 (or the delete lease expires): the put
                              lands after the delete
  after W1, lease live        D1 sees the write lease and leaves the path alone
  after W3 committed          D1 sees the row and leaves the path alone
  after W1, lease stale       D1 drops the lease and deletes; W3 finds its lease gone
  (writer paused > TTL)       (LeaseLost) and goes back to W1: it puts again
  and the deleter crashed     its lease blocks W1 until it expires; by then no delete it
                              sent is still in flight (TTL > 2 x storage timeout)

W3 and D1 both run under the image's lock, so "the lease is still there" (W3) and "no live
write lease" (D1) cannot both hold. The blob's timestamp plays no part: `put_once` keeps an
older orphan of the same bytes as it is, and gc's grace period only spares in-flight writers
the work of a second put. Rejected: checking the blob (HEAD, re-put) under the lock inside the
recording transaction (the previous design): a storage call that holds a lock and a pooled
connection; and a fresh timestamp without a lock: safe only while write-to-commit stays under
the grace period, which a slow catalog, a paused process or `imgest gc --grace 0` breaks. The
price: one more short catalog transaction per write (W1); a delete costs two (D1, D3).
Model weights (`models/`) are not gc's to remove, but take the same path (their lock is the
path's).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import anyio
import anyio.to_thread
from anyio import CapacityLimiter

from imgest.catalog.leases import Lease, LeaseLost, Leases
from imgest.errors import ImgestError, StorageUnavailable
from imgest.storage.base import (
    BatchPutStore,
    BlobExistsError,
    BlobMeta,
    BlobStore,
    StoreError,
)
from imgest.storage.timeout import TimeoutStore

T = TypeVar("T")
ATTEMPTS = 3  # W1..W3 tries before a writer gives up (each lost lease is a pause past the TTL)

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


async def store_and_record(
    store: BlobStore,
    catalog: Leases,
    blobs: Mapping[str, bytes],
    record: Callable[[Lease], T],
    *,
    limiter: CapacityLimiter | None = None,
) -> T:
    """Store `blobs` (path -> bytes) under a write lease, then `record(lease)` in a worker
    thread: a catalog write that spends the lease in its transaction (add_image, add_rendition,
    ...). Its result is returned; a storage failure is StorageUnavailable."""
    for _ in range(ATTEMPTS):
        lease = await take_write_lease(store, catalog, list(blobs), limiter=limiter)
        try:
            await put_blobs(store, blobs)
            return await anyio.to_thread.run_sync(record, lease, limiter=limiter)
        except LeaseLost as exc:
            log.warning("%s: a deleter found the lease stale; storing again", exc)
        finally:
            await end_lease(catalog, lease)
    raise StorageUnavailable("Blob storage writes are being deleted as they happen; try again.")


async def take_write_lease(
    store: BlobStore,
    catalog: Leases,
    paths: Sequence[str],
    *,
    limiter: CapacityLimiter | None = None,
) -> Lease:
    """W1: a write lease on `paths`, waiting while a deleter holds one of them (at most the
    store's timeout, or half the lease TTL: then StorageUnavailable)."""
    wait_s = store.seconds if isinstance(store, TimeoutStore) else _half(catalog.lease_ttl)
    deadline = time.monotonic() + wait_s
    pause = 0.01
    while (
        lease := await anyio.to_thread.run_sync(catalog.take_write_lease, paths, limiter=limiter)
    ) is None:
        if time.monotonic() >= deadline:
            raise StorageUnavailable("A blob of this request is being deleted; try again.")
        await anyio.sleep(pause)
        pause = min(pause * 2, 0.5)
    return lease


async def end_lease(catalog: Leases, lease: Lease) -> None:
    """Drop what is left of `lease`, best effort (a stale lease expires anyway); shielded from
    cancellation, so a cancelled request still drops it."""
    if lease.spent:
        return
    with anyio.CancelScope(shield=True):
        try:
            await anyio.to_thread.run_sync(catalog.end_lease, lease)
        except ImgestError:
            log.warning("could not drop blob lease %s; it expires", lease.holder, exc_info=True)


async def put_blobs(store: BlobStore, blobs: Mapping[str, bytes]) -> None:
    """W2: put_once every blob, as one batch (a local store flushes it with the concurrent
    writers' batches); the first failure is raised."""
    for error in await put_all_once(store, list(blobs.items())):
        if error is not None:
            raise error


@dataclass
class Deletion:
    """A deleter's delete lease (D1 done): which paths it may delete, and until when."""

    lease: Lease
    started: float  # time.monotonic() before D1 began
    ttl: timedelta

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths the lease covers."""
        return self.lease.paths

    def in_time(self) -> bool:
        """Whether a storage call may still be sent under the lease (under half its TTL)."""
        return time.monotonic() - self.started < _half(self.ttl)


@asynccontextmanager
async def deleting(
    catalog: Leases, take: Callable[[Lease], T], *, limiter: CapacityLimiter | None = None
) -> AsyncIterator[tuple[T, Deletion]]:
    """D1..D3: `take(lease)` (a catalog write that fills in a delete lease; its result comes
    back with the Deletion), the block deletes `Deletion.paths` while `in_time()`, and the
    lease is dropped after it, whatever happened."""
    started = time.monotonic()
    lease = Lease("delete", ())
    result = await anyio.to_thread.run_sync(take, lease, limiter=limiter)
    try:
        yield result, Deletion(lease, started, catalog.lease_ttl)
    finally:
        await end_lease(catalog, lease)


async def delete_blobs(store: BlobStore, deletion: Deletion) -> list[str]:
    """D2 for a deleter with nothing to check first: delete every leased path, in time; a
    failure is logged (gc retries later). Returns the paths deleted."""
    deleted = []
    for path in deletion.paths:
        if not deletion.in_time():
            log.warning("delete lease near expiry; leaving %s to gc", path)
            break
        try:
            await store.delete(path)
        except StoreError:
            log.warning("could not delete blob %s; gc will remove it", path, exc_info=True)
            continue
        deleted.append(path)
    return deleted


def _half(ttl: timedelta) -> float:
    return ttl.total_seconds() / 2


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
