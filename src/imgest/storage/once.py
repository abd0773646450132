"""Writing content-addressed blobs: created once; a blob already there holds the same bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from imgest.errors import StorageUnavailable
from imgest.storage.base import BatchPutStore, BlobExistsError, BlobMeta, BlobStore, StoreError


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


def _once(result: BlobMeta | StoreError) -> BaseException | None:
    """What one put's result means for put_once: None (stored, or there already with the
    same bytes), else the StorageUnavailable to report."""
    if isinstance(result, BlobMeta | BlobExistsError):
        return None
    error = StorageUnavailable()
    error.__cause__ = result
    return error
