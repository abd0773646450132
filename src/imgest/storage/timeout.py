"""A BlobStore wrapper that bounds every call: a hung backend becomes StoreUnavailableError."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import timedelta
from typing import TypeVar

import anyio

from imgest.storage.base import (
    BatchPutStore,
    BlobMeta,
    BlobReader,
    BlobStore,
    PutMode,
    StoreError,
    StoreTimeoutError,
    signed_url,
)

T = TypeVar("T")


async def bounded(seconds: float, what: str, call: Awaitable[T]) -> T:
    """Await `call`, or raise StoreTimeoutError (a StoreUnavailableError) after `seconds`."""
    try:
        with anyio.fail_after(seconds):
            return await call
    except TimeoutError:
        raise StoreTimeoutError(f"{what} took longer than {seconds:g} s") from None


async def _bounded_steps(seconds: float, what: str, steps: AsyncIterator[T]) -> AsyncIterator[T]:
    # Each step of a stream gets the full budget: a large blob may take long in total,
    # but a stalled one is cut off.
    iterator = aiter(steps)
    while True:
        try:
            yield await bounded(seconds, what, anext(iterator))
        except StopAsyncIteration:
            return


class _TimedReader:
    """A BlobReader whose chunks each arrive within the time limit."""

    def __init__(self, inner: BlobReader, seconds: float) -> None:
        self._inner = inner
        self._seconds = seconds
        self.meta = inner.meta

    async def stream(self, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        what = f"reading {self.meta.path}"
        async for chunk in _bounded_steps(self._seconds, what, self._inner.stream(chunk_size)):
            yield chunk

    async def read(self) -> bytes:
        return await bounded(self._seconds, f"reading {self.meta.path}", self._inner.read())


class TimeoutStore:
    """Delegates to `inner`; any call (or stream step) over `seconds` fails as unavailable."""

    def __init__(self, inner: BlobStore, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds
        self.url = inner.url

    async def put(self, path: str, data: bytes, *, mode: PutMode = "overwrite") -> BlobMeta:
        return await bounded(self.seconds, f"put {path}", self.inner.put(path, data, mode=mode))

    async def put_many(
        self, blobs: Sequence[tuple[str, bytes]], *, mode: PutMode = "create"
    ) -> list[BlobMeta | StoreError]:
        """The inner store's batch put when it has one (a local store's one flush), else
        one bounded put each; in order, each blob's BlobMeta or StoreError."""
        if isinstance(self.inner, BatchPutStore):
            what = f"put of {len(blobs)} blobs"
            return await bounded(self.seconds, what, self.inner.put_many(blobs, mode=mode))
        done = await asyncio.gather(
            *(self.put(path, data, mode=mode) for path, data in blobs), return_exceptions=True
        )
        results: list[BlobMeta | StoreError] = []
        for result in done:
            if isinstance(result, BaseException) and not isinstance(result, StoreError):
                raise result
            results.append(result)
        return results

    async def get(self, path: str) -> BlobReader:
        reader = await bounded(self.seconds, f"get {path}", self.inner.get(path))
        return _TimedReader(reader, self.seconds)

    async def head(self, path: str) -> BlobMeta:
        return await bounded(self.seconds, f"head {path}", self.inner.head(path))

    async def list(self, prefix: str = "") -> AsyncIterator[BlobMeta]:
        what = f"list {prefix!r}"
        async for meta in _bounded_steps(self.seconds, what, self.inner.list(prefix)):
            yield meta

    async def delete(self, path: str) -> None:
        await bounded(self.seconds, f"delete {path}", self.inner.delete(path))

    async def signed_url(
        self, path: str, expires: timedelta, *, content_type: str | None = None
    ) -> str | None:
        """The inner store's signed URL (None when it cannot sign)."""
        call = signed_url(self.inner, path, expires, content_type=content_type)
        return await bounded(self.seconds, f"sign {path}", call)

    async def close(self) -> None:
        await bounded(self.seconds, "close", self.inner.close())
