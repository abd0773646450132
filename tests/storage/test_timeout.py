"""TimeoutStore: the BlobStore contract still holds; a hung backend fails fast as unavailable."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import pytest

from imgest.storage.base import BlobMeta, BlobReader, PutMode, StoreUnavailableError
from imgest.storage.memory import MemoryStore
from imgest.storage.timeout import TimeoutStore

from .contract import BlobStoreContract


class TestTimeoutStoreContract(BlobStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[TimeoutStore]:
        store = TimeoutStore(MemoryStore(), seconds=5)
        yield store
        await store.close()


class HungStore(MemoryStore):
    """A MemoryStore whose calls never finish (a backend that stopped answering)."""

    async def put(self, path: str, data: bytes, *, mode: PutMode = "overwrite") -> BlobMeta:
        await anyio.sleep_forever()
        raise AssertionError

    async def head(self, path: str) -> BlobMeta:
        await anyio.sleep_forever()
        raise AssertionError


class SlowReader:
    def __init__(self, meta: BlobMeta) -> None:
        self.meta = meta

    async def stream(self, chunk_size: int = 1 << 16) -> AsyncIterator[bytes]:
        yield b"first"
        await anyio.sleep_forever()

    async def read(self) -> bytes:
        await anyio.sleep_forever()
        raise AssertionError


class StallingStore(MemoryStore):
    async def get(self, path: str) -> BlobReader:
        reader = await super().get(path)
        return SlowReader(reader.meta)


@pytest.mark.anyio
async def test_a_hung_call_becomes_unavailable_in_time() -> None:
    store = TimeoutStore(HungStore(), seconds=0.2)
    for call in (lambda: store.put("a/b", b"x"), lambda: store.head("a/b")):
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=r"longer than 0\.2 s"):
            await call()
        assert time.monotonic() - started < 2


@pytest.mark.anyio
async def test_a_stalled_stream_is_cut_off() -> None:
    inner = StallingStore()
    await inner.put("a/b", b"payload")
    store = TimeoutStore(inner, seconds=0.2)
    reader = await store.get("a/b")
    chunks = []
    with pytest.raises(StoreUnavailableError):
        async for chunk in reader.stream():
            chunks.append(chunk)
    assert chunks == [b"first"]
