"""Streaming multipart/form-data reader: parts to memory under limits, hashed as they arrive.

Nothing is spooled to disk (unlike Starlette's UploadFile): each file part is held in memory,
bounded by the per-file and per-request limits. Its SHA-256 is computed once the body has been
read: in a worker thread for big parts (hashlib lets go of the GIL), so the event loop, which
parses every request's bytes, is not also the one core that hashes them (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

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
from imgest.ingest import Upload

_MAX_FILENAME = 255
# Parts at least this big are hashed in a worker thread; below it the thread hand-off costs
# about as much as the hash.
THREAD_HASH_BYTES = 256 * 1024
_MAX_FIELD_NAME = 200
# Part data pieces smaller than this are gathered before they are kept (see _PartBytes).
KEEP_BYTES = 64 * 1024
# Stripped from display names: C0/C1 controls, line/paragraph separators, and the bidi
# controls (LRE RLE PDF LRO RLO, LRI RLI FSI PDI, LRM RLM, ALM) with which "gpj.exe" shows
# as "exe.jpg". Other format characters stay (ZWJ joins emoji, ZWNJ is Persian spelling).
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]"
)


@dataclass(frozen=True)
class UploadLimits:
    """Byte and count caps applied while the body streams in."""

    max_file_bytes: int = 50 * 1024 * 1024
    max_request_bytes: int = 200 * 1024 * 1024
    max_files: int = 32
    max_fields: int = 64
    max_field_bytes: int = 16 * 1024
    max_header_bytes: int = 16 * 1024


@dataclass
class _FilePart:
    """A file part while it streams in."""

    filename: str
    content_type: str | None
    error: ClientError | None = None


@dataclass
class Form:
    """A parsed request: file parts in arrival order and text fields as (name, value)."""

    files: list[Upload] = field(default_factory=list)
    fields: list[tuple[str, str]] = field(default_factory=list)


def openapi_body(properties: dict[str, Any], **schema: Any) -> dict[str, Any]:
    """The OpenAPI `requestBody` of a route that reads a form: required multipart/form-data,
    an object with these `properties` (and any further `schema` keywords)."""
    body = {"type": "object", "properties": properties, **schema}
    return {"required": True, "content": {"multipart/form-data": {"schema": body}}}


def clean_filename(raw: str) -> str:
    """The client's filename reduced to a safe display name: no path, no control or bidi
    control characters (every display name is made here)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL.sub("", unicodedata.normalize("NFC", name)).strip()
    if name in (".", ".."):
        name = ""
    return name[:_MAX_FILENAME]


class _PartBytes:
    """One part's bytes as they arrive, joined once at its end.

    A piece of at least KEEP_BYTES is held as it came when it is a whole chunk (immutable
    bytes: no copy), else copied once; smaller pieces are gathered into one buffer first, so a
    body sent in tiny pieces holds no more than its bytes (a list of one-byte objects would
    hold ~40 bytes for each). A growing buffer for the whole part (io.BytesIO) copied each of
    the server's ~256 KB reads again as it grew: 1.75 ms per 3.4 MB against 0.07 for the join
    (bench/tuning.md).
    """

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._small = bytearray()

    def add(self, data: bytes, start: int, end: int) -> None:
        if end - start >= KEEP_BYTES:
            self._flush()
            whole = start == 0 and end == len(data) and type(data) is bytes
            self._chunks.append(data if whole else bytes(memoryview(data)[start:end]))
            return
        self._small += memoryview(data)[start:end]
        if len(self._small) >= KEEP_BYTES:
            self._flush()

    def join(self) -> bytes:
        self._flush()
        return b"".join(self._chunks)

    def _flush(self) -> None:
        if self._small:
            self._chunks.append(bytes(self._small))
            self._small = bytearray()


class _PartBuilder:
    """Collects the callbacks of python-multipart's parser into parts."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.form = Form()
        self.ended = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._part = _PartBytes()
        self._size = 0
        self._file: _FilePart | None = None
        self._field_name: str | None = None

    # python-multipart callbacks -----------------------------------------------------------
    def on_part_begin(self) -> None:
        self._headers = {}
        self._header_bytes = 0
        self._part = _PartBytes()
        self._size = 0
        self._file = None
        self._field_name = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]
        self._count_header(end - start)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._count_header(end - start)

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition")
        if disposition is None:
            raise MalformedMultipart("A multipart part has no Content-Disposition header.")
        kind, options = parse_options_header(disposition)
        if kind.lower() != b"form-data" or b"name" not in options:
            raise MalformedMultipart(
                "Each multipart part needs 'Content-Disposition: form-data; name=...'."
            )
        name = _decode_header(options[b"name"])[:_MAX_FIELD_NAME]
        if b"filename" in options:
            if len(self.form.files) >= self.limits.max_files:
                raise TooManyFiles(f"The request has more than {self.limits.max_files} file parts.")
            ctype = self._headers.get(b"content-type")
            self._file = _FilePart(
                filename=clean_filename(_decode_header(options[b"filename"])),
                content_type=_decode_header(ctype)[:200] if ctype else None,
            )
        else:
            if len(self.form.fields) >= self.limits.max_fields:
                raise TooManyFields(
                    f"The request has more than {self.limits.max_fields} text fields."
                )
            self._field_name = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._file is not None:
            if self._file.error is not None:
                return  # over the limit: keep parsing, drop the bytes
            if self._size + n > self.limits.max_file_bytes:
                self._file.error = FileTooLarge(
                    f"{self._file.filename or 'The file'} is larger than the limit of "
                    f"{self.limits.max_file_bytes} bytes."
                )
                self._part = _PartBytes()
                self._size += n
                return
            self._part.add(data, start, end)
            self._size += n
        else:
            if self._size + n > self.limits.max_field_bytes:
                raise FieldTooLarge(
                    f"Text field {self._field_name!r} is larger than the limit of "
                    f"{self.limits.max_field_bytes} bytes."
                )
            self._part.add(data, start, end)
            self._size += n

    def on_part_end(self) -> None:
        if self._file is not None:
            part = self._file
            data = self._part.join() if part.error is None else b""
            if part.error is None and not data:
                if not part.filename:
                    # A browser sends an empty, nameless part for an unused file input.
                    self._part = _PartBytes()
                    return
                part.error = EmptyFile(f"{part.filename} has no bytes.")
            self.form.files.append(
                Upload(
                    data=data,
                    sha256="",  # read_form fills it in once the body is read
                    filename=part.filename,
                    content_type=part.content_type,
                    size=self._size,
                    error=part.error,
                )
            )
        elif self._field_name is not None:
            raw = self._part.join()
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidParameter(
                    f"Text field {self._field_name!r} is not valid UTF-8."
                ) from None
            self.form.fields.append((self._field_name, value))
        self._part = _PartBytes()

    def on_end(self) -> None:
        self.ended = True

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_header_bytes:
            raise MalformedMultipart(
                f"A multipart part's headers exceed {self.limits.max_header_bytes} bytes."
            )


def _decode_header(raw: bytes) -> str:
    # Browsers send UTF-8 in quoted header parameters; anything else is read as Latin-1.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def boundary_of(content_type: str | None) -> bytes:
    """The boundary from a multipart/form-data Content-Type, or the 4xx explaining why not."""
    if not content_type:
        raise NotMultipart("The request has no Content-Type; send multipart/form-data.")
    try:
        kind, options = parse_options_header(content_type)
    except UnicodeEncodeError:  # HTTP headers are latin-1; only an in-process caller gets here
        raise MalformedMultipart("The Content-Type header is not latin-1 text.") from None
    if kind.lower() != b"multipart/form-data":
        raise NotMultipart(f"Content-Type {kind.decode('latin-1')!r} is not multipart/form-data.")
    boundary = options.get(b"boundary")
    if not boundary:
        raise MalformedMultipart("The multipart/form-data Content-Type has no boundary.")
    if len(boundary) > 70 or not re.fullmatch(rb"[0-9A-Za-z'()+_,\-./:=? ]+", boundary):
        raise MalformedMultipart("The multipart boundary is not valid (RFC 2046).")
    return boundary


async def read_form(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    limits: UploadLimits,
) -> Form:
    """Parse a multipart/form-data body as it streams in; raise the 4xx that explains a refusal."""
    boundary = boundary_of(content_type)
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise MalformedMultipart("Content-Length is not a number.") from None
        if declared > limits.max_request_bytes:
            raise RequestTooLarge(
                f"The body of {declared} bytes is larger than the limit of "
                f"{limits.max_request_bytes} bytes."
            )
    builder = _PartBuilder(limits)
    callbacks = {
        name: getattr(builder, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > limits.max_request_bytes:
            raise RequestTooLarge(
                f"The body is larger than the limit of {limits.max_request_bytes} bytes."
            )
        if builder.ended:
            continue  # epilogue after the closing boundary is ignored (RFC 2046)
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedMultipart(f"The multipart body could not be parsed: {exc}.") from None
    if not builder.ended:
        raise MalformedMultipart(
            "The multipart body ended before its closing boundary (truncated upload?)."
        )
    form = builder.form
    big = sum(len(f.data) for f in form.files) >= THREAD_HASH_BYTES
    digests = await anyio.to_thread.run_sync(_digests, form.files) if big else _digests(form.files)
    form.files = [replace(f, sha256=d) for f, d in zip(form.files, digests, strict=True)]
    return form


def _digests(files: list[Upload]) -> list[str]:
    """Each file's SHA-256 (hex), or "" for a file refused while streaming."""
    return [hashlib.sha256(f.data).hexdigest() if f.error is None else "" for f in files]
