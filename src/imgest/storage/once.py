"""Writing content-addressed blobs: created once; a blob already there holds the same bytes."""

from __future__ import annotations

from imgest.errors import StorageUnavailable
from imgest.storage.base import BlobExistsError, BlobStore, StoreError


async def put_once(store: BlobStore, path: str, data: bytes) -> None:
    """Store `data` at its content-addressed `path` unless it is there already.

    An existing blob is these bytes (an earlier, unfinished try, or another replica), so it
    is kept; a storage failure becomes StorageUnavailable (503).
    """
    try:
        await store.put(path, data, mode="create")
    except BlobExistsError:
        pass
    except StoreError as exc:
        raise StorageUnavailable() from exc
