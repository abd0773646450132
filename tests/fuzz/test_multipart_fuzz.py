"""Fuzz the streaming multipart reader: any body, any chunking.

Properties: `read_form` returns a Form or raises a ClientError (a 4xx), nothing else; and a
well-formed body with random parts parses to exactly those parts however it is chunked.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgest.api.multipart import Form, UploadLimits, clean_filename, read_form
from imgest.errors import ClientError

# A failing example of a long run can be a large bytes object; its repr must not turn into an
# error that hides the real failure (filterwarnings = error).
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

B = b"fuzzBoundary7"
CT = "multipart/form-data; boundary=fuzzBoundary7"
LIMITS = UploadLimits(
    max_file_bytes=4096,
    max_request_bytes=64 * 1024,
    max_files=4,
    max_fields=8,
    max_field_bytes=512,
    max_header_bytes=1024,
)


async def _chunks(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        if cut > start:
            yield data[start:cut]
            start = cut


def _parse(data: bytes, cuts: list[int], content_type: str = CT) -> Form | ClientError:
    async def run() -> Form:
        return await read_form(content_type, str(len(data)), _chunks(data, cuts), LIMITS)

    try:
        return asyncio.run(run())
    except ClientError as exc:
        return exc


_tokens = st.sampled_from(
    [
        b"--fuzzBoundary7",
        b"--fuzzBoundary7--",
        b"\r\n",
        b"\r\n\r\n",
        b"\n",
        b'Content-Disposition: form-data; name="file"; filename="a.jpg"',
        b'Content-Disposition: form-data; name="tag"',
        b"Content-Type: image/jpeg",
        b"\xff\xd8\xff\xe0",
        b"filename*=UTF-8''%e2%82%ac.jpg",
        b'"',
        b";",
        b"\x00",
        b" ",
    ]
)
_bodies = st.lists(st.one_of(_tokens, st.binary(max_size=64)), max_size=40).map(b"".join)


@given(body=_bodies, cuts=st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=8))
def test_any_body_is_a_form_or_a_client_error(body: bytes, cuts: list[int]) -> None:
    result = _parse(body, cuts)
    assert isinstance(result, Form | ClientError)


@given(
    content_type=st.text(max_size=120).map(lambda s: "multipart/form-data; " + s),
    body=_bodies,
)
def test_any_content_type_is_handled(content_type: str, body: bytes) -> None:
    result = _parse(body, [], content_type)
    assert isinstance(result, Form | ClientError)


_names = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters='"\\'),
    min_size=1,
    max_size=20,
)
_payload = st.binary(min_size=1, max_size=600).filter(lambda b: B not in b)
_parts = st.lists(st.tuples(st.booleans(), _names, _payload), min_size=1, max_size=4)


def _encode(parts: list[tuple[bool, str, bytes]]) -> bytes:
    out = b""
    for is_file, name, payload in parts:
        disposition = f'form-data; name="{"file" if is_file else name}"'
        if is_file:
            disposition += f'; filename="{name}.bin"'
        out += b"--" + B + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n"
        out += payload + b"\r\n"
    return out + b"--" + B + b"--\r\n"


@given(parts=_parts, cuts=st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=16))
def test_well_formed_bodies_parse_to_their_parts_under_any_chunking(
    parts: list[tuple[bool, str, bytes]], cuts: list[int]
) -> None:
    result = _parse(_encode(parts), cuts)
    if isinstance(result, ClientError):  # only a text field that is not UTF-8 may be refused
        assert any(not f and _not_utf8(p) for f, _, p in parts), result
        return
    files = [(n, p) for is_file, n, p in parts if is_file]
    expected = [(clean_filename(f"{n}.bin"), p) for n, p in files]
    assert [(u.filename, u.data) for u in result.files] == expected
    assert [u.sha256 for u in result.files] == [hashlib.sha256(p).hexdigest() for _, p in files]
    fields = [(n, p.decode()) for is_file, n, p in parts if not is_file]
    assert result.fields == fields


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return True
    return False
