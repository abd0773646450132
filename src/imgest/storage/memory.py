"""MemoryStore: a real in-process BlobStore (not a mock), for fast tests and throwaway runs."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Self
from urllib.parse import urlsplit

import anyio.lowlevel

from imgest.storage.base import (
    BlobExistsError,
    BlobMeta,
    BlobNotFoundError,
    OneShotReader,
    PutMode,
    StoreUnavailableError,
    split,
    validate_path,
    validate_prefix,
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class BytesReader(OneShotReader):
    """A BlobReader over bytes already in memory; consumed once, like a network stream."""

    def __init__(self, meta: BlobMeta, data: bytes) -> None:
        super().__init__(meta)
        self._data = data

    def _release(self) -> bytes:
        data, self._data = self._data, b""
        return data

    async def _chunks(self, chunk_size: int) -> AsyncIterator[bytes]:
        for chunk in split(self._release(), chunk_size):
            yield chunk

    async def read(self) -> bytes:
        """The whole blob."""
        self._take()
        return self._release()


class MemoryStore:
    """Blobs in a dict of path -> (bytes, last_modified, etag).

    Every operation yields to the event loop once and then runs its check-and-set without
    awaiting, under a lock, so it is atomic for asyncio tasks and for threads alike. The etag
    is the MD5 of the content (as S3 reports for single-part uploads).
    """

    def __init__(self, name: str = "") -> None:
        if name and not _NAME.fullmatch(name):
            raise ValueError(f"invalid memory store name: {name!r}")
        self.url = f"memory://{name}"
        self._blobs: dict[str, tuple[bytes, datetime, str]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> Self:
        """A new, empty store for `memory://` or `memory://<name>`."""
        parts = urlsplit(url)
        if parts.scheme != "memory" or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"not a memory store URL (want memory:// or memory://name): {url!r}")
        return cls(parts.netloc)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailableError(f"store {self.url} is closed")

    def _meta(self, path: str) -> BlobMeta:
        try:
            data, last_modified, etag = self._blobs[path]
        except KeyError:
            raise BlobNotFoundError(path) from None
        return BlobMeta(path, len(data), last_modified, etag)

    async def put(self, path: str, data: bytes, *, mode: PutMode = "overwrite") -> BlobMeta:
        """Store a copy of `data` at `path`."""
        validate_path(path)
        if mode not in ("create", "overwrite"):
            raise ValueError(f"mode must be 'create' or 'overwrite', not {mode!r}")
        await anyio.lowlevel.checkpoint()
        data = bytes(data)  # a caller's bytearray must not change what is stored
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        with self._lock:
            self._check_open()
            if mode == "create" and path in self._blobs:
                raise BlobExistsError(path)
            self._blobs[path] = (data, datetime.now(UTC), etag)
            return self._meta(path)

    async def get(self, path: str) -> BytesReader:
        """Open the blob at `path`; the reader sees the bytes as they were at this call."""
        validate_path(path)
        await anyio.lowlevel.checkpoint()
        with self._lock:
            self._check_open()
            meta = self._meta(path)
            return BytesReader(meta, self._blobs[path][0])

    async def head(self, path: str) -> BlobMeta:
        """Metadata of the blob at `path`."""
        validate_path(path)
        await anyio.lowlevel.checkpoint()
        with self._lock:
            self._check_open()
            return self._meta(path)

    async def list(self, prefix: str = "") -> AsyncIterator[BlobMeta]:
        """Every blob whose path starts with `prefix` (a snapshot taken at the first step)."""
        validate_prefix(prefix)
        await anyio.lowlevel.checkpoint()
        with self._lock:
            self._check_open()
            metas = [self._meta(p) for p in sorted(self._blobs) if p.startswith(prefix)]
        for meta in metas:
            yield meta

    async def delete(self, path: str) -> None:
        """Remove the blob at `path`, if any."""
        validate_path(path)
        await anyio.lowlevel.checkpoint()
        with self._lock:
            self._check_open()
            self._blobs.pop(path, None)

    async def close(self) -> None:
        """Drop every blob; later operations raise StoreUnavailableError."""
        with self._lock:
            self._closed = True
            self._blobs.clear()
