"""What the network backends share: URL parsing, redaction, bounded parallel jobs, readers,
the RemoteStore skeleton."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import pytest

from imgest.storage.base import (
    BlobExistsError,
    BlobMeta,
    BlobNotFoundError,
    PutMode,
    StoreOptions,
    StoreUnavailableError,
)
from imgest.storage.remote import (
    ChunkedReader,
    Fault,
    RemoteStore,
    parse_remote_url,
    redact,
    run_bounded,
)

NAME = re.compile(r"[a-z0-9-]{3,63}")


def test_a_url_is_taken_apart() -> None:
    parts = parse_remote_url("s3://bkt/a/b/?endpoint=http%3A%2F%2Fh%3A1&x=&timeout=2.5", "s3", NAME)
    assert (parts.container, parts.prefix) == ("bkt", "a/b/")
    assert parts.options(StoreOptions(retries=7)) == StoreOptions(timeout_s=2.5, retries=7)
    assert parts.pop("endpoint") == "http://h:1"
    assert parts.pop("x") == ""
    parts.refuse_leftovers()


def test_leftover_parameters_are_named_but_not_their_values() -> None:
    parts = parse_remote_url("s3://bkt?secrte=hunter2", "s3", NAME)
    with pytest.raises(ValueError, match="secrte") as got:
        parts.refuse_leftovers()
    assert "hunter2" not in str(got.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://b?key_id=AK&secret=abc%2Fdef", "s3://b?key_id=AK&secret=***"),
        ("azure://c?connection_string=Account%3Dx%3BKey%3Dy", "azure://c?connection_string=***"),
        ("https://a.blob/c/x?sv=1&sig=abc", "https://a.blob/c/x?sv=1&sig=***"),
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("/srv/blobs", "/srv/blobs"),
        ("memory://", "memory://"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.anyio
async def test_run_bounded_limits_concurrency_and_raises_the_first_error_itself() -> None:
    running, most = 0, 0

    async def job() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await anyio.sleep(0.01)
        running -= 1

    await run_bounded([job] * 10, 3)
    assert most == 3

    async def boom() -> None:
        raise KeyError("part 2")

    with pytest.raises(KeyError):  # not an ExceptionGroup
        await run_bounded([job, boom, job], 2)


@pytest.mark.anyio
async def test_a_chunked_reader_splits_big_pieces_and_releases_once() -> None:
    released: list[bool] = []

    async def pieces() -> AsyncIterator[bytes]:
        yield b"abcdefg"
        yield b"hi"

    async def release() -> None:
        released.append(True)

    meta = BlobMeta("p", 9, datetime.now(UTC))
    reader = ChunkedReader(meta, pieces(), release)
    assert [c async for c in reader.stream(3)] == [b"abc", b"def", b"g", b"hi"]
    assert released == [True]


class _Gone(Exception):
    """The fake library's errors: `fault` is what RemoteStore should make of them."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault)
        self.fault = fault


class _DictStore(RemoteStore):
    """A RemoteStore over a dict whose container can vanish and whose calls can fail."""

    def __init__(self) -> None:
        super().__init__(url="fake://box", prefix="pre/")
        self.blobs: dict[str, bytes] | None = None  # None: no container
        self.created = 0
        self.fail: Exception | None = None

    def _fault(self, exc: Exception) -> Fault | None:
        return exc.fault if isinstance(exc, _Gone) else None

    def _box(self) -> dict[str, bytes]:
        if self.fail is not None:
            raise self.fail
        if self.blobs is None:
            raise _Gone("no_container")
        return self.blobs

    async def _create_container(self) -> None:
        self.created += 1
        if self.blobs is None:
            self.blobs = {}

    async def _put(self, path: str, key: str, data: bytes, mode: PutMode) -> BlobMeta:
        box = self._box()
        if mode == "create" and key in box:
            raise _Gone("exists")
        box[key] = data
        return BlobMeta(path, len(data), datetime.now(UTC))

    async def _head(self, path: str, key: str) -> BlobMeta:
        box = self._box()
        if key not in box:
            raise _Gone("no_blob")
        return BlobMeta(path, len(box[key]), datetime.now(UTC))

    async def _list(self, key_prefix: str) -> AsyncIterator[BlobMeta]:
        for key, data in sorted(self._box().items()):
            if key.startswith(key_prefix):
                yield BlobMeta(key, len(data), datetime.now(UTC))

    async def _delete(self, key: str) -> None:
        if key not in self._box():
            raise _Gone("no_blob")
        del self._box()[key]

    async def _close(self) -> None:
        self.blobs = None


@pytest.mark.anyio
async def test_remote_store_maps_a_backends_faults_to_the_protocols_errors() -> None:
    store = _DictStore()
    assert [m async for m in store.list()] == []  # no container yet: nothing stored
    with pytest.raises(BlobNotFoundError):
        await store.head("a")  # nor a container
    await store.delete("a")  # a missing blob is fine
    await store.put("a", b"1", mode="create")
    assert store.created == 1 and store.blobs == {"pre/a": b"1"}
    with pytest.raises(BlobExistsError):
        await store.put("a", b"2", mode="create")
    with pytest.raises(ValueError):
        await store.put("a", b"2", mode="create_or_not")  # type: ignore[arg-type]
    await store.put("a", b"2")
    assert [(m.path, m.size) async for m in store.list()] == [("a", 1)]  # prefix stripped
    with pytest.raises(BlobNotFoundError):
        await store.head("b")
    await store.delete("b")
    store.blobs = None  # removed under the running store: made again, once
    await store.put("b", b"3", mode="create")
    assert store.created == 2 and store.blobs == {"pre/b": b"3"}
    store.fail = _Gone("failed")
    for call in (store.head("b"), store.delete("b"), store.put("c", b"")):
        with pytest.raises(StoreUnavailableError, match=r"_DictStore.*failed: _Gone"):
            await call
    with pytest.raises(StoreUnavailableError):
        [m async for m in store.list()]
    store.fail = KeyError("a bug")  # not the library's: itself, unmapped
    with pytest.raises(KeyError):
        await store.head("b")
    store.fail = None
    await store.close()
    with pytest.raises(StoreUnavailableError, match="closed"):
        await store.head("b")
