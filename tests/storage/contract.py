"""The BlobStore contract: behaviour every storage backend must show, as one test class.

A backend's test module subclasses `BlobStoreContract` and overrides one fixture, `store`,
which yields a fresh, EMPTY store (for a remote backend: a new container or bucket, or a
unique key prefix nobody else writes to) and closes it afterwards. Every contract test then
runs against that backend. For example `tests/storage/test_azure.py` needs only::

    from collections.abc import AsyncIterator

    import pytest

    from imgest.storage.azure import AzureStore
    from tests.storage.contract import BlobStoreContract  # or: from .contract import ...


    class TestAzureStoreContract(BlobStoreContract):
        @pytest.fixture
        async def store(self) -> AsyncIterator[AzureStore]:
            store = AzureStore.from_url(azurite_url_with_a_new_container())
            yield store
            await store.close()

Backend-specific tests go in the same module, outside the subclass or in it. The async tests
run on anyio's pytest plugin with the `anyio_backend` fixture from `tests/storage/conftest.py`
(asyncio). A remote service is installed and started by the test setup (never skipped: a missing
service fails the run).

What the contract pins down beyond the protocol's signatures: chunks from `stream` are
non-empty and at most `chunk_size` bytes; a reader is consumed once (RuntimeError after);
`put` returns the same size and etag as a later `head`; `last_modified` is UTC and within
`CLOCK_SKEW` of the test's clock; after `close` (idempotent) every operation raises
StoreUnavailableError; invalid paths and prefixes raise InvalidPathError before any I/O.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from imgest.storage.base import (
    BlobExistsError,
    BlobMeta,
    BlobNotFoundError,
    BlobStore,
    InvalidPathError,
    StoreUnavailableError,
)

# How far a backend's last_modified may stray from this machine's clock (remote servers).
CLOCK_SKEW = timedelta(seconds=60)

LIST_LAYOUT = ["a/b/c1", "a/b/c2", "a/bc", "a/d/e", "ab", "z/y"]

INVALID_PATHS = [
    "",
    "/abs",
    "/etc/passwd",
    "../escape",
    "a/../../escape",
    "..",
    ".",
    "./a",
    "a/./b",
    "a//b",
    "a/",
    "a\\b",
    "..\\escape",
    "a\x00b",
]

INVALID_PREFIXES = ["/", "/a", "../", "a/../", "a//", "./a", "a\\", "a\x00"]


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes, so a mismatch shows which write won."""
    return random.Random(seed).randbytes(size)


async def read(store: BlobStore, path: str) -> bytes:
    """The whole blob at `path`."""
    return await (await store.get(path)).read()


async def chunks_of(store: BlobStore, path: str, chunk_size: int) -> list[bytes]:
    """The chunks `stream(chunk_size)` yields for the blob at `path`."""
    reader = await store.get(path)
    return [chunk async for chunk in reader.stream(chunk_size)]


async def listed(store: BlobStore, prefix: str = "") -> list[str]:
    """The paths `list(prefix)` reports, sorted, duplicates kept (so they can be caught)."""
    return sorted([meta.path async for meta in store.list(prefix)])


def assert_utc_near(moment: datetime, before: datetime, after: datetime) -> None:
    """`moment` is timezone-aware UTC and between `before` and `after` (give or take skew)."""
    assert moment.tzinfo is not None
    assert moment.utcoffset() == timedelta(0)
    assert before - CLOCK_SKEW <= moment <= after + CLOCK_SKEW


@pytest.mark.anyio
class BlobStoreContract:
    """Every BlobStore backend passes these; subclass and override the `store` fixture."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[BlobStore]:
        """Override me: yield a fresh, empty store of the backend under test, then close it."""
        raise NotImplementedError("a BlobStoreContract subclass must override the store fixture")
        yield  # pragma: no cover (makes this an async generator, like the overrides)

    # --- identity ----------------------------------------------------------------------

    async def test_store_is_a_blob_store_with_a_url(self, store: BlobStore) -> None:
        assert isinstance(store, BlobStore)
        assert isinstance(store.url, str)
        assert "://" in store.url

    # --- put / get ---------------------------------------------------------------------

    async def test_put_then_get_returns_the_bytes(self, store: BlobStore) -> None:
        data = b"\x89PNG\r\n\x1a\n" + payload(1000)
        await store.put("originals/ab/cd/abcd", data)
        assert await read(store, "originals/ab/cd/abcd") == data

    async def test_empty_blob_roundtrips(self, store: BlobStore) -> None:
        meta = await store.put("empty", b"", mode="create")
        assert meta.size == 0
        assert await read(store, "empty") == b""
        assert await chunks_of(store, "empty", 1024) == []
        assert (await store.head("empty")).size == 0
        assert await listed(store) == ["empty"]

    async def test_multi_mib_blob_streams_in_bounded_chunks(self, store: BlobStore) -> None:
        data = payload(5 * 1024 * 1024 + 123, seed=5)
        meta = await store.put("big/blob.bin", data)
        assert meta.size == len(data)
        chunk_size = 64 * 1024
        chunks = await chunks_of(store, "big/blob.bin", chunk_size)
        assert len(chunks) >= len(data) // chunk_size
        assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
        assert b"".join(chunks) == data
        assert await read(store, "big/blob.bin") == data

    async def test_stream_honours_an_odd_chunk_size(self, store: BlobStore) -> None:
        data = payload(10_007, seed=1)
        await store.put("odd", data)
        chunks = await chunks_of(store, "odd", 1000)
        assert all(0 < len(chunk) <= 1000 for chunk in chunks)
        assert b"".join(chunks) == data

    async def test_stream_default_chunk_size_yields_everything(self, store: BlobStore) -> None:
        data = payload(200_000, seed=2)
        await store.put("default", data)
        reader = await store.get("default")
        assert b"".join([chunk async for chunk in reader.stream()]) == data

    async def test_chunk_size_must_be_positive(self, store: BlobStore) -> None:
        await store.put("x", b"abc")
        reader = await store.get("x")
        with pytest.raises(ValueError):
            async for _ in reader.stream(0):
                pass

    async def test_a_reader_is_consumed_once(self, store: BlobStore) -> None:
        await store.put("once", b"abc")
        reader = await store.get("once")
        assert await reader.read() == b"abc"
        with pytest.raises(RuntimeError):
            async for _ in reader.stream():
                pass
        with pytest.raises(RuntimeError):
            await reader.read()

    async def test_paths_with_spaces_unicode_and_url_characters(self, store: BlobStore) -> None:
        paths = ["dir with space/ünïcødé.jpg", "q/a?b=c&d#e", "pct/100%25.bin", "plus/a+b"]
        for i, path in enumerate(paths):
            await store.put(path, payload(10 + i, seed=i))
        for i, path in enumerate(paths):
            assert await read(store, path) == payload(10 + i, seed=i)
            assert (await store.head(path)).size == 10 + i
        assert await listed(store) == sorted(paths)

    async def test_missing_blob_is_not_found(self, store: BlobStore) -> None:
        await store.put("present/one", b"1")
        for path in ("absent", "present/two", "present/one/deeper", "present"):
            with pytest.raises(BlobNotFoundError) as got:
                await store.get(path)
            assert got.value.path == path
            with pytest.raises(BlobNotFoundError):
                await store.head(path)

    # --- metadata ----------------------------------------------------------------------

    async def test_put_reports_what_head_reports(self, store: BlobStore) -> None:
        data = payload(4321)
        put = await store.put("m/blob", data)
        head = await store.head("m/blob")
        assert put.path == head.path == "m/blob"
        assert put.size == head.size == len(data)
        if put.etag is not None and head.etag is not None:
            assert put.etag == head.etag

    async def test_get_reports_the_blob_meta(self, store: BlobStore) -> None:
        await store.put("m/blob", b"12345")
        reader = await store.get("m/blob")
        assert reader.meta.path == "m/blob"
        assert reader.meta.size == 5
        assert reader.meta.etag == (await store.head("m/blob")).etag

    async def test_last_modified_is_utc_and_now(self, store: BlobStore) -> None:
        before = datetime.now(UTC)
        put = await store.put("t", b"time")
        after = datetime.now(UTC)
        head = await store.head("t")
        assert_utc_near(put.last_modified, before, after)
        assert_utc_near(head.last_modified, before, after)

    # --- modes -------------------------------------------------------------------------

    async def test_create_stores_a_new_blob(self, store: BlobStore) -> None:
        meta = await store.put("new/blob", b"fresh", mode="create")
        assert meta.size == 5
        assert await read(store, "new/blob") == b"fresh"

    async def test_create_refuses_an_existing_blob_and_keeps_it(self, store: BlobStore) -> None:
        original = payload(3000, seed=1)
        first = await store.put("c/blob", original, mode="create")
        with pytest.raises(BlobExistsError) as got:
            await store.put("c/blob", payload(10, seed=2), mode="create")
        assert got.value.path == "c/blob"
        assert await read(store, "c/blob") == original
        head = await store.head("c/blob")
        assert head.size == len(original)
        assert head.etag == first.etag
        assert await listed(store) == ["c/blob"]

    async def test_overwrite_replaces_content_size_and_etag(self, store: BlobStore) -> None:
        first = await store.put("o/blob", b"version one")
        second = await store.put("o/blob", b"v2", mode="overwrite")
        assert await read(store, "o/blob") == b"v2"
        head = await store.head("o/blob")
        assert head.size == second.size == 2
        if first.etag is not None:
            assert head.etag != first.etag
        assert await listed(store) == ["o/blob"]

    async def test_default_mode_is_overwrite(self, store: BlobStore) -> None:
        await store.put("d/blob", b"one")
        await store.put("d/blob", b"two!")
        assert await read(store, "d/blob") == b"two!"

    async def test_an_unknown_mode_is_refused(self, store: BlobStore) -> None:
        with pytest.raises(ValueError):
            await store.put("m", b"x", mode="append")  # type: ignore[arg-type]
        assert await listed(store) == []

    async def test_concurrent_creates_of_one_path_let_exactly_one_win(
        self, store: BlobStore
    ) -> None:
        tries = 20
        won: list[int] = []
        lost: list[int] = []

        async def attempt(i: int) -> None:
            try:
                await store.put("race/blob", payload(1000 + i, seed=i), mode="create")
            except BlobExistsError:
                lost.append(i)
            else:
                won.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(tries):
                tg.start_soon(attempt, i)
        assert len(won) == 1, won
        assert sorted(won + lost) == list(range(tries))
        assert await read(store, "race/blob") == payload(1000 + won[0], seed=won[0])

    async def test_concurrent_overwrites_leave_one_whole_version(self, store: BlobStore) -> None:
        versions = [bytes([i]) * (128 * 1024 + i) for i in range(12)]
        async with anyio.create_task_group() as tg:
            for data in versions:
                tg.start_soon(store.put, "race/over", data)
        assert await read(store, "race/over") in versions
        assert await listed(store) == ["race/over"]

    # --- list --------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            ("", LIST_LAYOUT),
            ("a", ["a/b/c1", "a/b/c2", "a/bc", "a/d/e", "ab"]),
            ("a/", ["a/b/c1", "a/b/c2", "a/bc", "a/d/e"]),
            ("a/b", ["a/b/c1", "a/b/c2", "a/bc"]),
            ("a/b/", ["a/b/c1", "a/b/c2"]),
            ("a/b/c", ["a/b/c1", "a/b/c2"]),
            ("a/b/c1", ["a/b/c1"]),
            ("a/b/c1/", []),
            ("a/b/c3", []),
            ("a/d/e", ["a/d/e"]),
            ("z/", ["z/y"]),
            ("nothing", []),
            ("nothing/at/all/", []),
            ("b", []),
        ],
    )
    async def test_list_by_prefix(self, store: BlobStore, prefix: str, expected: list[str]) -> None:
        for path in LIST_LAYOUT:
            await store.put(path, path.encode())
        assert await listed(store, prefix) == expected

    async def test_list_reports_the_meta_head_reports(self, store: BlobStore) -> None:
        for path in LIST_LAYOUT:
            await store.put(path, path.encode() * 3)
        metas: list[BlobMeta] = [meta async for meta in store.list()]
        assert len(metas) == len(LIST_LAYOUT)
        for meta in metas:
            head = await store.head(meta.path)
            assert meta.size == head.size == 3 * len(meta.path)
            assert meta.etag == head.etag
            assert meta.last_modified.utcoffset() == timedelta(0)

    async def test_list_of_an_empty_store_is_empty(self, store: BlobStore) -> None:
        assert await listed(store) == []
        assert await listed(store, "a/") == []

    # --- delete ------------------------------------------------------------------------

    async def test_delete_removes_only_that_blob(self, store: BlobStore) -> None:
        for path in ("a/b", "a/bc", "a/b2", "a/c/b"):
            await store.put(path, b"x")
        await store.delete("a/b")
        with pytest.raises(BlobNotFoundError):
            await store.get("a/b")
        with pytest.raises(BlobNotFoundError):
            await store.head("a/b")
        assert await listed(store) == ["a/b2", "a/bc", "a/c/b"]

    async def test_delete_is_idempotent(self, store: BlobStore) -> None:
        await store.put("gone", b"x")
        await store.delete("gone")
        await store.delete("gone")
        await store.delete("never/was")
        assert await listed(store) == []

    async def test_a_deleted_path_can_be_created_again(self, store: BlobStore) -> None:
        await store.put("again", b"one", mode="create")
        await store.delete("again")
        await store.put("again", b"two", mode="create")
        assert await read(store, "again") == b"two"

    # --- invalid input -----------------------------------------------------------------

    @pytest.mark.parametrize("path", INVALID_PATHS)
    async def test_invalid_paths_are_refused(self, store: BlobStore, path: str) -> None:
        with pytest.raises(InvalidPathError):
            await store.put(path, b"x")
        with pytest.raises(InvalidPathError):
            await store.put(path, b"x", mode="create")
        with pytest.raises(InvalidPathError):
            await store.get(path)
        with pytest.raises(InvalidPathError):
            await store.head(path)
        with pytest.raises(InvalidPathError):
            await store.delete(path)
        assert await listed(store) == []

    @pytest.mark.parametrize("prefix", INVALID_PREFIXES)
    async def test_invalid_prefixes_are_refused(self, store: BlobStore, prefix: str) -> None:
        with pytest.raises(InvalidPathError):
            await listed(store, prefix)

    # --- close -------------------------------------------------------------------------

    async def test_close_is_idempotent_and_later_calls_fail(self, store: BlobStore) -> None:
        await store.put("before", b"x")
        await store.close()
        await store.close()
        with pytest.raises(StoreUnavailableError):
            await store.put("after", b"x")
        with pytest.raises(StoreUnavailableError):
            await store.get("before")
        with pytest.raises(StoreUnavailableError):
            await store.head("before")
        with pytest.raises(StoreUnavailableError):
            await listed(store)
        with pytest.raises(StoreUnavailableError):
            await store.delete("before")
