"""The streaming multipart reader: parts, hashes, limits and malformed bodies."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from imgest.api.multipart import KEEP_BYTES, UploadLimits, clean_filename, read_form
from imgest.errors import (
    ClientError,
    EmptyFile,
    FieldTooLarge,
    FileTooLarge,
    InvalidParameter,
    MalformedMultipart,
    NotMultipart,
    RequestTooLarge,
    TooManyFields,
    TooManyFiles,
)

B = "XyZboundary42"
CT = f"multipart/form-data; boundary={B}"


def part(name: str, value: bytes, filename: str | None = None, ctype: str | None = None) -> bytes:
    disp = f'form-data; name="{name}"'
    if filename is not None:
        disp += f'; filename="{filename}"'
    head = f"--{B}\r\nContent-Disposition: {disp}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return head.encode() + b"\r\n" + value + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{B}--\r\n".encode()


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def parse(data: bytes, limits: UploadLimits | None = None, ct: str | None = CT, size=7):
    return await read_form(ct, str(len(data)), chunks(data, size), limits or UploadLimits())


@pytest.mark.anyio
@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 20])
async def test_files_and_fields_in_order_with_hashes(size: int) -> None:
    a, b = b"\xff\xd8" + bytes(range(256)) * 40, b"second file\r\n--not-the-boundary"
    form = await parse(
        body(
            part("description", b"kitchen"),
            part("file", a, "a.jpg", "image/jpeg"),
            part("file", b, "b.png"),
            part("tag", "caf\u00e9,x".encode()),
        ),
        size=size,
    )
    assert [f.filename for f in form.files] == ["a.jpg", "b.png"]
    assert form.files[0].data == a and form.files[1].data == b
    assert form.files[0].sha256 == hashlib.sha256(a).hexdigest()
    assert form.files[0].size == len(a)
    assert form.files[0].content_type == "image/jpeg" and form.files[1].content_type is None
    assert form.fields == [("description", "kitchen"), ("tag", "caf\u00e9,x")]


@pytest.mark.anyio
async def test_a_reused_chunk_buffer_does_not_change_a_part() -> None:
    # The reader keeps whole chunks of part data by reference, which is safe only for
    # immutable bytes: a caller that hands in one buffer and refills it must not corrupt a part.
    data = bytes(range(256)) * 2048  # 512 KiB: whole chunks of it are big enough to keep
    raw = body(part("file", data, "a.jpg"))

    async def reused(size: int = 2 * KEEP_BYTES) -> AsyncIterator[bytes]:
        buffer = bytearray()
        for i in range(0, len(raw), size):
            buffer[:] = raw[i : i + size]
            yield buffer  # type: ignore[misc]
            buffer[:] = b"\0" * len(buffer)

    form = await read_form(CT, str(len(raw)), reused(), UploadLimits())
    assert form.files[0].data == data
    assert form.files[0].sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.anyio
async def test_a_body_in_tiny_pieces_holds_no_more_than_its_bytes() -> None:
    # One-byte chunks (a client writing byte by byte) must not become one object each while
    # the part is read: that would hold ~40 times the part's size.
    data = bytes(range(256)) * 128  # 32 KiB
    raw = body(part("file", data, "a.jpg"))
    tracemalloc.start()
    try:
        form = await parse(raw, size=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert form.files[0].data == data
    assert peak < 6 * len(data), f"peak {peak} bytes for a part of {len(data)}"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("ct", "error"),
    [
        (None, NotMultipart),
        ("application/json", NotMultipart),
        ("image/jpeg", NotMultipart),
        ("multipart/form-data", MalformedMultipart),
        ("multipart/form-data; boundary=", MalformedMultipart),
        ("multipart/form-data; boundary=" + "x" * 71, MalformedMultipart),
    ],
)
async def test_content_type_refused(ct: str | None, error: type[ClientError]) -> None:
    with pytest.raises(error):
        await parse(body(part("file", b"x", "a.jpg")), ct=ct)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "data",
    [
        b"",  # no body at all
        body(part("file", b"abc", "a.jpg"))[:-10],  # cut before the closing boundary
        b'--other\r\nContent-Disposition: form-data; name="f"\r\n\r\nx\r\n--other--\r\n',
        f"--{B}\r\nContent-Type: image/jpeg\r\n\r\nabc\r\n--{B}--\r\n".encode(),  # no disposition
        f"--{B}\r\nContent-Disposition: attachment\r\n\r\nabc\r\n--{B}--\r\n".encode(),
        f"--{B}\r\nbroken header line without colon\r\n\r\nabc\r\n--{B}--\r\n".encode(),
    ],
    ids=["empty", "truncated", "wrong-boundary", "no-disposition", "not-form-data", "bad-header"],
)
async def test_malformed_bodies(data: bytes) -> None:
    with pytest.raises(MalformedMultipart):
        await parse(data)


@pytest.mark.anyio
async def test_huge_part_headers_refused() -> None:
    head = f'--{B}\r\nContent-Disposition: form-data; name="f"; filename="a.jpg"\r\n'
    head += "".join(f"X-Pad-{i}: {'a' * 1000}\r\n" for i in range(40))
    data = head.encode() + b"\r\nabc\r\n" + f"--{B}--\r\n".encode()
    with pytest.raises(MalformedMultipart):
        await parse(data)


@pytest.mark.anyio
async def test_file_over_limit_is_rejected_but_others_survive() -> None:
    limits = UploadLimits(max_file_bytes=100)
    form = await parse(
        body(part("f", b"x" * 101, "big.jpg"), part("f", b"y" * 100, "ok.jpg")), limits
    )
    big, ok = form.files
    assert isinstance(big.error, FileTooLarge) and big.data == b"" and big.size == 101
    assert ok.error is None and ok.data == b"y" * 100


@pytest.mark.anyio
async def test_request_over_limit() -> None:
    data = body(part("f", b"x" * 500, "a.jpg"))
    with pytest.raises(RequestTooLarge):
        await parse(data, UploadLimits(max_request_bytes=400))
    # a lying Content-Length is caught while streaming
    with pytest.raises(RequestTooLarge):
        await read_form(CT, "10", chunks(data), UploadLimits(max_request_bytes=400))


@pytest.mark.anyio
async def test_count_and_field_limits() -> None:
    with pytest.raises(TooManyFiles):
        await parse(
            body(*(part("f", b"x", f"{i}.jpg") for i in range(3))), UploadLimits(max_files=2)
        )
    with pytest.raises(TooManyFields):
        await parse(body(*(part(f"k{i}", b"v") for i in range(3))), UploadLimits(max_fields=2))
    with pytest.raises(FieldTooLarge):
        await parse(body(part("description", b"d" * 11)), UploadLimits(max_field_bytes=10))
    with pytest.raises(InvalidParameter):
        await parse(body(part("description", b"\xff\xfe")))


@pytest.mark.anyio
async def test_empty_files() -> None:
    form = await parse(body(part("f", b"", "empty.jpg"), part("f", b"", "")))
    # a named empty file is an error; a nameless empty part is an unused browser file input
    assert len(form.files) == 1
    assert isinstance(form.files[0].error, EmptyFile)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\cat.jpg", "cat.jpg"),
        ("a\x00b\x1f.jpg", "ab.jpg"),
        ("..", ""),
        ("x" * 300 + ".jpg", "x" * 255),
        # Issue 14 item 10: bidi controls made "cat\u202egpj.exe" display as "catexe.jpg".
        ("cat\u202egpj.exe", "catgpj.exe"),
        ("\u202a\u202b\u202c\u202d\u202ea.jpg", "a.jpg"),
        ("\u2066\u2067\u2068\u2069b.jpg", "b.jpg"),
        ("\u200e\u200f\u061cc.jpg", "c.jpg"),
        ("d\x85\u2028\u2029.jpg", "d.jpg"),
        ("\U0001f468\u200d\U0001f469.jpg", "\U0001f468\u200d\U0001f469.jpg"),  # ZWJ stays
    ],
)
def test_clean_filename(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean
