"""The BlobStore protocol every storage backend implements, and its typed errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

PutMode = Literal["create", "overwrite"]


class StoreError(Exception):
    """Base of storage errors."""


class BlobNotFoundError(StoreError):
    """No blob at this path."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"blob not found: {path}")


class BlobExistsError(StoreError):
    """`put(mode="create")` found a blob already at this path."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"blob already exists: {path}")


class StoreUnavailableError(StoreError):
    """The backend could not be reached or failed; the operation may be retried."""


class StoreTimeoutError(StoreUnavailableError):
    """The backend did not answer within the storage timeout (it hangs, or is that slow)."""


def timed_out(exc: BaseException) -> bool:
    """Whether `exc`, or the error it was raised from, is a StoreTimeoutError: every further
    call to that store would likely wait the whole timeout too."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StoreTimeoutError):
            return True
        seen = seen.__cause__
    return False


class StoreURLError(ValueError):
    """A storage URL that names no usable store (unknown scheme, or one its backend refuses)."""


class InvalidPathError(StoreError, ValueError):
    """The path is not a valid blob path (empty, absolute, `..`, backslash, NUL...)."""


@dataclass(frozen=True)
class BlobMeta:
    """What `head` and `list` report about one blob."""

    path: str
    size: int
    last_modified: datetime  # timezone-aware UTC
    etag: str | None = None


class BlobReader(Protocol):
    """An open blob: its metadata and its bytes as a stream of chunks."""

    meta: BlobMeta

    def stream(self, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        """Yield the blob's bytes in chunks; the stream is consumed once.

        Chunks are non-empty and at most `chunk_size` bytes (so memory stays bounded);
        a reader is consumed once: a second `stream()` or `read()` raises RuntimeError.
        """
        ...

    async def read(self) -> bytes:
        """The whole blob (for small blobs); consumes the reader like `stream()`."""
        ...


class OneShotReader:
    """What every store's BlobReader shares: `meta`, consumed once, chunk sizes checked.

    A subclass supplies `_chunks(chunk_size)` (the bytes as non-empty chunks of at most that
    size) and `read()`, and calls `_take()` first in anything that consumes the blob.
    """

    def __init__(self, meta: BlobMeta) -> None:
        self.meta = meta
        self._consumed = False

    def _take(self) -> None:
        if self._consumed:
            raise RuntimeError(f"blob reader for {self.meta.path!r} was already consumed")
        self._consumed = True

    def stream(self, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        """Yield the blob's bytes in non-empty chunks of at most `chunk_size`."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        self._take()
        return self._chunks(chunk_size)

    def _chunks(self, chunk_size: int) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def read(self) -> bytes:
        """The whole blob."""
        raise NotImplementedError


def split(data: bytes, chunk_size: int) -> Iterator[bytes]:
    """`data` in pieces of at most `chunk_size` bytes (none for empty data)."""
    view = memoryview(data)
    for start in range(0, len(view), chunk_size):
        yield bytes(view[start : start + chunk_size])


@runtime_checkable
class BlobStore(Protocol):
    """A small object-store surface (modelled on obstore): paths are `/`-separated keys."""

    url: str

    async def put(self, path: str, data: bytes, *, mode: PutMode = "overwrite") -> BlobMeta:
        """Store `data` at `path` durably before returning.

        mode="create" raises BlobExistsError when something is there already.
        """
        ...

    async def get(self, path: str) -> BlobReader:
        """Open the blob at `path`; raises BlobNotFoundError."""
        ...

    async def head(self, path: str) -> BlobMeta:
        """Metadata of the blob at `path`; raises BlobNotFoundError."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[BlobMeta]:
        """Every blob whose path starts with `prefix`, in no particular order.

        `prefix` is a plain key prefix and may end mid-name (`"originals/a"`); see
        `validate_prefix`.
        """
        ...

    async def delete(self, path: str) -> None:
        """Remove the blob at `path`; deleting a missing blob is not an error."""
        ...

    async def close(self) -> None:
        """Release connections and files.

        Idempotent; afterwards every operation raises StoreUnavailableError.
        """
        ...


@runtime_checkable
class BatchPutStore(Protocol):
    """The optional capability of backends that store a batch of blobs more cheaply than one
    put each (LocalStore: one flush of the filesystem for the batch)."""

    async def put_many(
        self, blobs: Sequence[tuple[str, bytes]], *, mode: PutMode = "create"
    ) -> list[BlobMeta | StoreError]:
        """Store every (path, data) durably before returning, each as `put` would: in order,
        the BlobMeta of each, or the StoreError that blob got."""
        ...


@runtime_checkable
class SigningStore(Protocol):
    """The optional capability of backends whose blobs can be fetched by a URL alone."""

    async def signed_url(
        self, path: str, expires: timedelta, *, content_type: str | None = None
    ) -> str | None:
        """A URL that reads the blob at `path` without credentials until `expires` from now.

        `content_type` is what the URL's response should declare. None when this store
        cannot sign (e.g. its credentials cannot make a signature).
        """
        ...


@dataclass(frozen=True)
class StoreOptions:
    """How a backend talks to its storage: network behaviour of remote backends, the group
    commit and page-cache advice of a local one (each backend ignores what is not its own)."""

    timeout_s: float = 30.0  # one request: connect, and each read, at most this long
    retries: int = 3  # retries of a failed request (connection error, 5xx, timeout)
    group_commit: bool = True  # local: concurrent puts share one flush (imgest.storage.local)
    drop_cache: bool = True  # local: a durable blob's pages leave the page cache


async def signed_url(
    store: BlobStore, path: str, expires: timedelta, *, content_type: str | None = None
) -> str | None:
    """A signed read URL for `path` when `store` can make one, else None (proxy the bytes)."""
    if not isinstance(store, SigningStore):
        return None
    return await store.signed_url(validate_path(path), expires, content_type=content_type)


def validate_path(path: str) -> str:
    """Return `path` if it is a safe relative blob key, else raise InvalidPathError."""
    if not path or path.startswith("/") or path.endswith("/"):
        raise InvalidPathError(f"invalid blob path: {path!r}")
    if "\\" in path or "\x00" in path:
        raise InvalidPathError(f"invalid blob path: {path!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise InvalidPathError(f"invalid blob path: {path!r}")
    return path


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is a safe key prefix for `list`, else raise InvalidPathError.

    Every complete segment must be a valid path segment; the last one may be any start of a
    name (`""`, `"."`, `"ab"`), since a prefix may end mid-name.
    """
    if not prefix:
        return prefix
    if prefix.startswith("/") or "\\" in prefix or "\x00" in prefix:
        raise InvalidPathError(f"invalid blob prefix: {prefix!r}")
    if any(part in ("", ".", "..") for part in prefix.split("/")[:-1]):
        raise InvalidPathError(f"invalid blob prefix: {prefix!r}")
    return prefix
