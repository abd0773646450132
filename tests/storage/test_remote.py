"""What the network backends share: URL parsing, redaction, bounded parallel jobs, readers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import pytest

from imgest.storage.base import BlobMeta, StoreOptions
from imgest.storage.remote import ChunkedReader, parse_remote_url, redact, run_bounded

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
