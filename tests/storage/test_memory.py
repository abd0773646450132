"""MemoryStore: the BlobStore contract, plus what is particular to keeping blobs in a dict."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import anyio
import pytest

from imgest.storage.memory import MemoryStore

from .contract import BlobStoreContract, read


class TestMemoryStoreContract(BlobStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore()
        yield store
        await store.close()


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore()
    yield store
    await store.close()


@pytest.mark.anyio
async def test_a_reader_keeps_the_bytes_it_opened(store: MemoryStore) -> None:
    await store.put("p", b"old")
    before_overwrite = await store.get("p")
    await store.put("p", b"new")
    before_delete = await store.get("p")
    await store.delete("p")
    assert await before_overwrite.read() == b"old"
    assert await before_delete.read() == b"new"


@pytest.mark.anyio
async def test_put_stores_a_copy_of_mutable_input(store: MemoryStore) -> None:
    data = bytearray(b"abc")
    await store.put("p", data)  # type: ignore[arg-type]  # a caller that ignores the types
    data[0] = ord("X")
    assert await read(store, "p") == b"abc"


@pytest.mark.anyio
async def test_etag_is_the_content_md5(store: MemoryStore) -> None:
    one = await store.put("one", b"same")
    two = await store.put("two", b"same")
    three = await store.put("three", b"other")
    assert one.etag == two.etag == hashlib.md5(b"same", usedforsecurity=False).hexdigest()
    assert three.etag == hashlib.md5(b"other", usedforsecurity=False).hexdigest()


@pytest.mark.anyio
async def test_list_is_a_snapshot(store: MemoryStore) -> None:
    for path in ("a", "b", "c"):
        await store.put(path, b"x")
    seen = []
    async for meta in store.list():
        seen.append(meta.path)
        await store.delete("c")  # changing the store mid-listing must not break the iteration
        await store.put("d", b"x")
    assert seen == ["a", "b", "c"]


@pytest.mark.anyio
async def test_operations_yield_to_the_event_loop(store: MemoryStore) -> None:
    # Like a real backend, a put lets other tasks run; a store that never yielded would hide
    # races in the code that uses it.
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        await store.put("p", b"x")
        ran.append("put done")
    assert ran == ["other", "put done"]


def test_url_names_the_store() -> None:
    assert MemoryStore().url == "memory://"
    assert MemoryStore("cache").url == "memory://cache"
    assert MemoryStore.from_url("memory://").url == "memory://"
    assert MemoryStore.from_url("memory://cache").url == "memory://cache"


@pytest.mark.parametrize(
    "url", ["file:///tmp", "memory://a/b", "memory://a?x=1", "memory://bad name", "memory://-x"]
)
def test_from_url_refuses_other_urls(url: str) -> None:
    with pytest.raises(ValueError):
        MemoryStore.from_url(url)
