"""The Python client (httpx, sync and async): upload with retries, read, list, download.

Every upload carries its own `Idempotency-Key` (a UUID made once per file and reused on each
retry), so a retry after a lost answer gets the first answer back instead of doing the work
again. Connection errors, 429, 502, 503, 504 and 409 `idempotency_key_in_flight` are retried
with exponential backoff and jitter (tenacity), waiting what `Retry-After` says when the server
says it, within a bounded number of attempts and a bounded total time. A server that cannot be
connected to at all (refused, or no connection within `connect_timeout`) is given up on sooner,
after `RetryPolicy.connect_max_time`, with `ServerUnreachable` naming the URL.

The server URL: the `url` argument, else `$IMGEST_URL`, else
`http://127.0.0.1:$IMGEST_PORT` (port 8000 when `IMGEST_PORT` is unset), as `imgest serve`
binds by default.

Why one long module: it is the public surface of the client install (`from imgest.client
import Client, AsyncClient, RetryPolicy, ...`). Each call is written once (`_Requests`: an
`Op` generator that yields its requests and is sent their answers, with the retry rules and
errors); a public method of either client is one line that drives it, blocking or awaited.
Only `list_images` and the streaming `download_to` are written twice, where the I/O itself
differs, and the twins sit in one file so that a change to one is made to both.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import mimetypes
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import anyio.to_thread
import httpx
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    stop_before_delay,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from imgest import __version__
from imgest.api.schemas import (
    AppliedOut,
    ErrorOut,
    ImageOut,
    ImagePage,
    SimilarPage,
    UploadItemOut,
)
from imgest.catalog.records import Additions
from imgest.errors import ClientError, ConfigError
from imgest.labels import check_label, check_tags

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
API_KEY_ENV = "IMGEST_API_KEY"
URL_ENV = "IMGEST_URL"
PORT_ENV = "IMGEST_PORT"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)  # nothing was sent

Image = ImageOut  # what the API answers for one image (GET /v1/images/{id})
Source = str | os.PathLike[str] | bytes | IO[bytes]

_T = TypeVar("_T")
_M = TypeVar("_M", bound=BaseModel)
Build = Callable[[], httpx.Request]  # a request, built anew for each attempt
# One client call without its I/O: it yields the requests it needs, is sent their answers and
# returns its result; Client._run and AsyncClient._run drive it, blocking or awaited.
Op = Generator[Build, httpx.Response, _T]


# --- errors ---------------------------------------------------------------------------------


class ImgestClientError(Exception):
    """Base of everything the client raises."""


class ApiError(ImgestClientError):
    """The server answered with an error (problem+json); `code` is its stable error code."""

    def __init__(self, status: int, code: str, detail: str, problem: dict[str, Any]) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.problem = problem
        super().__init__(f"{status} {code}: {detail}")


class NotFound(ApiError):
    """404: no such image or rendition."""


class Unavailable(ApiError):
    """429 or 5xx after every retry: the server is overloaded or a dependency is down."""


class ConnectionFailed(ImgestClientError):
    """No answer (connection refused, reset or timed out) after every retry."""


class ServerUnreachable(ConnectionFailed):
    """No connection could be made at all (refused, unresolvable, connect timeout)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach imgest at {url} ({reason})")


def default_url() -> str:
    """`$IMGEST_URL`, else http://127.0.0.1:`$IMGEST_PORT` (8000 when unset)."""
    url = os.environ.get(URL_ENV)
    if url:
        return url
    port = os.environ.get(PORT_ENV, "").strip()
    if not port:
        return DEFAULT_URL
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"{PORT_ENV}={port!r} is not a port number (1..65535)")
    return f"http://127.0.0.1:{int(port)}"


def server_url(url: str) -> str:
    """`url` without a trailing slash; ConfigError unless it is an http(s) URL with a host
    (anything else used to be retried for a minute, or raised from inside httpx)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ConfigError(f"{url!r} is not a URL ({exc}); e.g. http://127.0.0.1:8000") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{url!r} is not an http:// or https:// URL; e.g. http://127.0.0.1:8000")
    return url.rstrip("/")


def _reason(error: BaseException, connect_timeout: float) -> str:
    """Why a connection failed, in words: connection refused, a timeout, a name not found."""
    if isinstance(error, httpx.ConnectTimeout):
        return f"no connection within {connect_timeout:g} s"
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "host name not found"
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    if "refused" in text.lower() or "all connection attempts failed" in text.lower():
        return "connection refused"
    return text or type(error).__name__


class _RetryableAnswer(Exception):
    """A 429/5xx/409-in-flight answer, raised inside the retry loop."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.retry_after = retry_after(response)
        super().__init__(f"HTTP {response.status_code}")


def api_error(response: httpx.Response) -> ApiError:
    """The typed exception for an error response."""
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    code = str(problem.get("code") or f"http_{response.status_code}")
    detail = str(problem.get("detail") or response.reason_phrase)
    status = response.status_code
    cls = NotFound if status == 404 else Unavailable if status in RETRY_STATUSES else ApiError
    return cls(status, code, detail, problem)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _StopUnreachable(stop_base):
    """Stop once a connection has failed and the next try would start past `max_time`."""

    def __init__(self, max_time: float) -> None:
        self.max_time = max_time

    def __call__(self, retry_state: RetryCallState) -> bool:
        assert retry_state.outcome is not None
        waited = (retry_state.seconds_since_start or 0.0) + retry_state.upcoming_sleep
        error = retry_state.outcome.exception()
        return isinstance(error, CONNECT_ERRORS) and waited > self.max_time


def _should_retry(response: httpx.Response) -> bool:
    if response.status_code in RETRY_STATUSES:
        return True
    if response.status_code == 409:  # the first try is still being processed: ask again
        try:
            return bool(response.json().get("code") == "idempotency_key_in_flight")
        except (ValueError, AttributeError):
            return False
    return False


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: bounded attempts and total time, exponential backoff with jitter."""

    attempts: int = 8
    max_time: float = 120.0  # seconds from the first try; no retry would start after this
    initial: float = 0.5  # first backoff, seconds; doubles each time
    max_wait: float = 30.0  # longest backoff (Retry-After is honoured even when longer)
    jitter: float = 0.5  # up to this many random seconds added to each backoff
    # A server that cannot be connected to is not retried past this many seconds from the
    # first try: a restart of a few seconds is ridden out, a stopped server is reported fast.
    connect_max_time: float = 5.0


@dataclass(frozen=True)
class UploadResult:
    """What became of one file: created, existing or rejected (with the server's reason)."""

    status: Literal["created", "existing", "rejected"]
    id: str  # SHA-256 of the bytes, computed locally
    filename: str
    size: int
    item: UploadItemOut | None = None  # the server's answer for the file (None when skipped)
    error: ErrorOut | None = None
    sent: bool = True  # False when a HEAD found the bytes stored and nothing was uploaded
    replayed: bool = False  # the answer was the stored one of an earlier try (same key)
    applied: AppliedOut | None = None  # what the upload's tags, label and fields did


def additions(
    description: str | None,
    tags: Iterable[str],
    label: str | None,
    fields: Mapping[str, str] | None,
) -> Additions | None:
    """The metadata an upload brings, as the server reads it (None when the server would
    refuse it: then only an upload can say why)."""
    try:
        values: dict[str, str | list[str]] = dict(fields or {})
        if description is not None:
            values["description"] = description
        return Additions(
            tags=tuple(check_tags(t for raw in tags for t in raw.split(","))),
            label=None if label is None else check_label(label),
            fields=values,
        )
    except ClientError:
        return None


@dataclass(frozen=True)
class _File:
    data: bytes
    filename: str
    sha256: str
    content_type: str


def read_source(source: Source, filename: str | None = None) -> _File:
    """Bytes, name, hash and media type of a path, bytes or binary file object."""
    if isinstance(source, bytes):
        data, name = source, filename or "upload"
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        data, name = path.read_bytes(), filename or path.name
    else:
        data = source.read()
        name = filename or Path(str(getattr(source, "name", "upload"))).name
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return _File(data, name, hashlib.sha256(data).hexdigest(), ctype)


def form_fields(
    description: str | None,
    tags: Iterable[str],
    label: str | None,
    fields: Mapping[str, str] | None,
) -> list[tuple[str, str]]:
    """The text fields of an upload, in a stable order."""
    out = list((fields or {}).items())
    if description is not None:
        out.append(("description", description))
    if label is not None:
        out.append(("label", label))
    out.extend(("tag", t) for t in tags)
    return out


@dataclass
class _Options:
    base_url: str
    api_key: str | None
    retry: RetryPolicy
    timeout: float
    connect_timeout: float
    headers: dict[str, str] = field(default_factory=dict)

    def httpx_timeout(self) -> httpx.Timeout:
        """`timeout` for each read and write, `connect_timeout` to connect."""
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)


def _options(
    url: str | None,
    api_key: str | None,
    retry: RetryPolicy | None,
    timeout: float,
    connect_timeout: float,
) -> _Options:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    headers = {"User-Agent": f"imgest-client/{__version__}"}
    if key:
        if not all(" " < c <= "~" for c in key):
            raise ConfigError(
                "The API key must be printable ASCII without spaces (as `imgest keys create` "
                "prints it)."
            )
        headers["Authorization"] = f"Bearer {key}"
    return _Options(
        base_url=server_url(url or default_url()),
        api_key=key,
        retry=retry or RetryPolicy(),
        timeout=timeout,
        connect_timeout=connect_timeout,
        headers=headers,
    )


class _Requests:
    """What the sync and async clients share: request building, retry rules, answer parsing
    and each call's steps (an `Op`); the clients only send."""

    options: _Options
    http: httpx.Client | httpx.AsyncClient

    def _retry_args(self) -> dict[str, Any]:
        policy = self.options.retry
        backoff = wait_exponential(multiplier=policy.initial, max=policy.max_wait) + wait_random(
            0, policy.jitter
        )

        def wait(state: RetryCallState) -> float:
            assert state.outcome is not None
            error = state.outcome.exception()
            if isinstance(error, _RetryableAnswer) and error.retry_after is not None:
                return error.retry_after
            return float(backoff(state))

        def before_sleep(state: RetryCallState) -> None:
            assert state.outcome is not None and state.next_action is not None
            log.info(
                "retrying in %.2fs after attempt %d: %s",
                state.next_action.sleep,
                state.attempt_number,
                state.outcome.exception(),
            )

        return {
            "retry": retry_if_exception_type((httpx.TransportError, _RetryableAnswer)),
            "stop": stop_any(
                stop_after_attempt(policy.attempts),
                stop_before_delay(policy.max_time),
                _StopUnreachable(policy.connect_max_time),
            ),
            "wait": wait,
            "before_sleep": before_sleep,
            "reraise": True,
        }

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if _should_retry(response):
            raise _RetryableAnswer(response)
        return response

    def _final(self, error: BaseException) -> ImgestClientError:
        if isinstance(error, _RetryableAnswer):
            return api_error(error.response)
        url, reason = self.options.base_url, _reason(error, self.options.connect_timeout)
        if isinstance(error, CONNECT_ERRORS):
            return ServerUnreachable(url, reason)
        return ConnectionFailed(f"no answer from imgest at {url} after retries ({reason})")

    def _request(self, method: str, path: str, **kwargs: Any) -> Build:
        return lambda: self.http.build_request(method, path, **kwargs)

    def _upload(
        self,
        file: _File,
        description: str | None,
        tags: Iterable[str],
        label: str | None,
        fields: Mapping[str, str] | None,
        skip_existing: bool,
    ) -> Op[UploadResult]:
        """`Client.upload` once the file is read."""
        if skip_existing:
            add = additions(description, tags, label, fields)
            if not add and add is not None and (yield from self._exists(file.sha256)):
                return self._skipped(file)
            if add:
                stored = self._stored((yield self._request("GET", f"/v1/images/{file.sha256}")))
                if (skipped := self._nothing_new(file, stored, add)) is not None:
                    return skipped
        # One key per file, made once: every retry of this file sends the same key.
        build = self._request(
            "POST",
            "/v1/images",
            files=[("file", (file.filename, file.data, file.content_type))],
            data=_multi(form_fields(description, tags, label, fields)),
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        return self._upload_result((yield build), file)

    def _exists(self, image_id: str) -> Op[bool]:
        response = yield self._request("HEAD", f"/v1/images/{image_id}")
        if response.status_code == 404:
            return False
        if not response.is_success:
            raise api_error(response)
        return True

    def _model(self, model: type[_M], method: str, path: str, **kwargs: Any) -> Op[_M]:
        """One request whose answer is `model` (an error answer raises ApiError)."""
        response = yield self._request(method, path, **kwargs)
        return model.model_validate_json(self._ok(response).content)

    def _get(self, image_id: str) -> Op[Image]:
        return self._model(Image, "GET", f"/v1/images/{image_id}")

    def _page(
        self, limit: int, cursor: str | None, filters: Mapping[str, str | datetime | None]
    ) -> Op[ImagePage]:
        params = self._list_params(limit, cursor, filters)
        return self._model(ImagePage, "GET", "/v1/images", params=params)

    def _download(self, image_id: str, pipeline: str | None) -> Op[bytes]:
        response = yield self._request("GET", _rendition_path(image_id, pipeline))
        return self._ok(response).content

    def _similar(self, image_id: str, k: int) -> Op[SimilarPage]:
        return self._model(SimilarPage, "GET", f"/v1/images/{image_id}/similar", params={"k": k})

    def _similar_to(self, file: _File, k: int) -> Op[SimilarPage]:
        files = [("file", (file.filename, file.data, file.content_type))]
        return self._model(SimilarPage, "POST", "/v1/similar", params={"k": k}, files=files)

    @staticmethod
    def _upload_result(response: httpx.Response, file: _File) -> UploadResult:
        try:
            body = response.json()
        except ValueError:
            raise api_error(response) from None
        items = body.get("images") if isinstance(body, dict) else None
        if not response.is_success and not items:
            raise api_error(response)
        assert isinstance(items, list) and items, "an upload answer lists its images"
        item = UploadItemOut.model_validate(items[0])
        return UploadResult(
            status=item.status,
            id=file.sha256,
            filename=file.filename,
            size=len(file.data),
            item=item,
            error=item.error,
            replayed=response.headers.get("idempotent-replayed") == "true",
            applied=item.applied,
        )

    @classmethod
    def _nothing_new(cls, file: _File, stored: Image | None, add: Additions) -> UploadResult | None:
        """The result of a file stored with everything `add` brings, or None when its
        metadata would change the stored image (then the bytes are sent: the server merges)."""
        if stored is None:
            return None
        found = add.applied_to(stored)
        if found.changes:
            return None
        applied = AppliedOut(label=found.label, fields_conflict=list(found.fields_conflict))
        return cls._skipped(file, applied)

    @staticmethod
    def _skipped(file: _File, applied: AppliedOut | None = None) -> UploadResult:
        return UploadResult(
            status="existing",
            id=file.sha256,
            filename=file.filename,
            size=len(file.data),
            sent=False,
            applied=applied,
        )

    @staticmethod
    def _stored(response: httpx.Response) -> Image | None:
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise api_error(response)
        return Image.model_validate_json(response.content)

    @staticmethod
    def _ok(response: httpx.Response) -> httpx.Response:
        if not response.is_success:
            raise api_error(response)
        return response

    @staticmethod
    def _list_params(
        limit: int, cursor: str | None, filters: Mapping[str, str | datetime | None]
    ) -> dict[str, str | int]:
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        for name, value in filters.items():
            if value is not None:
                params[name] = value.isoformat() if isinstance(value, datetime) else value
        return params


def _multi(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    # httpx takes repeated form fields as lists
    out: dict[str, list[str]] = {}
    for name, value in fields:
        out.setdefault(name, []).append(value)
    return out


def _rendition_path(image_id: str, pipeline: str | None) -> str:
    if pipeline is None:
        return f"/v1/images/{image_id}/original"
    return f"/v1/images/{image_id}/renditions/{pipeline}"


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


class Client(_Requests):
    """Synchronous client. Use as a context manager, or call `close()`.

    `url` defaults to `$IMGEST_URL`, else http://127.0.0.1:`$IMGEST_PORT` (8000); `api_key`
    to `$IMGEST_API_KEY` (sent as `Authorization: Bearer`). `timeout` bounds each read and
    write, `connect_timeout` each connection attempt (seconds).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 3.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.options = _options(url, api_key, retry, timeout, connect_timeout)
        self.http: httpx.Client = httpx.Client(
            base_url=self.options.base_url,
            headers=self.options.headers,
            timeout=self.options.httpx_timeout(),
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _send(self, build: Build) -> httpx.Response:
        try:
            for attempt in Retrying(**self._retry_args()):
                with attempt:
                    return self._check(self.http.send(build()))
        except (httpx.TransportError, _RetryableAnswer) as exc:
            raise self._final(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, op: Op[_T]) -> _T:
        """Send each request `op` yields (with retries) and give it the answer."""
        try:
            build = next(op)
            while True:
                build = op.send(self._send(build))
        except StopIteration as done:
            result: _T = done.value
            return result

    def upload(
        self,
        source: Source,
        *,
        filename: str | None = None,
        description: str | None = None,
        tags: Iterable[str] = (),
        label: str | None = None,
        fields: Mapping[str, str] | None = None,
        skip_existing: bool = False,
    ) -> UploadResult:
        """Upload one file (path, bytes or binary file object) with its metadata.

        With `skip_existing`, ask first (HEAD by the local SHA-256, or GET when the upload
        carries tags, a label or fields) and send nothing if the server has these bytes
        already with everything they would add; otherwise the bytes are sent and the server
        merges the metadata in. A rejected file is a result, not an exception.
        """
        file = read_source(source, filename)
        upload = self._upload(file, description, tags, label, fields, skip_existing)
        return self._run(upload)

    def exists(self, image_id: str) -> bool:
        """Whether an image with this id (the SHA-256 of its bytes) is stored."""
        return self._run(self._exists(image_id))

    def get(self, image_id: str) -> Image:
        """One image's metadata, renditions and predictions."""
        return self._run(self._get(image_id))

    def page(
        self, *, limit: int = 100, cursor: str | None = None, **filters: str | datetime | None
    ) -> ImagePage:
        """One page of images, newest first (filters: label, tag, since, until)."""
        return self._run(self._page(limit, cursor, filters))

    def list_images(
        self, *, page_size: int = 100, **filters: str | datetime | None
    ) -> Iterator[Image]:
        """Every matching image, newest first, fetching pages lazily through the cursor."""
        cursor: str | None = None
        while True:
            page = self.page(limit=page_size, cursor=cursor, **filters)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def download(self, image_id: str, *, pipeline: str | None = None) -> bytes:
        """The original's bytes (or those of the rendition of `pipeline`)."""
        return self._run(self._download(image_id, pipeline))

    def similar(self, image_id: str, *, k: int = 10) -> SimilarPage:
        """The `k` stored images most similar to a stored one (GET /v1/images/{id}/similar)."""
        return self._run(self._similar(image_id, k))

    def similar_to(
        self, source: Source, *, k: int = 10, filename: str | None = None
    ) -> SimilarPage:
        """The `k` stored images most similar to a query image (POST /v1/similar; the file
        is not stored)."""
        return self._run(self._similar_to(read_source(source, filename), k))

    def download_to(
        self, image_id: str, dest: str | os.PathLike[str], *, pipeline: str | None = None
    ) -> Path:
        """Stream the original (or a rendition) to `dest` (via `dest.part`, then renamed)."""
        path = _rendition_path(image_id, pipeline)
        target = Path(dest)
        try:
            for attempt in Retrying(**self._retry_args()):
                with attempt:
                    response = self.http.send(self.http.build_request("GET", path), stream=True)
                    try:
                        if not response.is_success:
                            response.read()
                            self._ok(self._check(response))
                        with _part(target).open("wb") as out:
                            for chunk in response.iter_bytes():
                                out.write(chunk)
                    finally:
                        response.close()
        except (httpx.TransportError, _RetryableAnswer) as exc:
            raise self._final(exc) from exc
        _part(target).replace(target)
        return target


class AsyncClient(_Requests):
    """Asynchronous client (same methods as `Client`, awaited). Use `async with`."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 16,
    ) -> None:
        self.options = _options(url, api_key, retry, timeout, connect_timeout)
        self.http: httpx.AsyncClient = httpx.AsyncClient(
            base_url=self.options.base_url,
            headers=self.options.headers,
            timeout=self.options.httpx_timeout(),
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def _send(self, build: Build) -> httpx.Response:
        try:
            async for attempt in AsyncRetrying(**self._retry_args()):
                with attempt:
                    return self._check(await self.http.send(build()))
        except (httpx.TransportError, _RetryableAnswer) as exc:
            raise self._final(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, op: Op[_T]) -> _T:
        """Send each request `op` yields (with retries) and give it the answer."""
        try:
            build = next(op)
            while True:
                build = op.send(await self._send(build))
        except StopIteration as done:
            result: _T = done.value
            return result

    async def upload(
        self,
        source: Source,
        *,
        filename: str | None = None,
        description: str | None = None,
        tags: Iterable[str] = (),
        label: str | None = None,
        fields: Mapping[str, str] | None = None,
        skip_existing: bool = False,
    ) -> UploadResult:
        """Upload one file; see `Client.upload`."""
        file = await anyio.to_thread.run_sync(read_source, source, filename)  # read + hash
        upload = self._upload(file, description, tags, label, fields, skip_existing)
        return await self._run(upload)

    async def exists(self, image_id: str) -> bool:
        """Whether an image with this id (the SHA-256 of its bytes) is stored."""
        return await self._run(self._exists(image_id))

    async def get(self, image_id: str) -> Image:
        """One image's metadata, renditions and predictions."""
        return await self._run(self._get(image_id))

    async def page(
        self, *, limit: int = 100, cursor: str | None = None, **filters: str | datetime | None
    ) -> ImagePage:
        """One page of images, newest first (filters: label, tag, since, until)."""
        return await self._run(self._page(limit, cursor, filters))

    async def list_images(
        self, *, page_size: int = 100, **filters: str | datetime | None
    ) -> AsyncIterator[Image]:
        """Every matching image, newest first, fetching pages lazily through the cursor."""
        cursor: str | None = None
        while True:
            page = await self.page(limit=page_size, cursor=cursor, **filters)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def download(self, image_id: str, *, pipeline: str | None = None) -> bytes:
        """The original's bytes (or those of the rendition of `pipeline`)."""
        return await self._run(self._download(image_id, pipeline))

    async def similar(self, image_id: str, *, k: int = 10) -> SimilarPage:
        """The `k` stored images most similar to a stored one (GET /v1/images/{id}/similar)."""
        return await self._run(self._similar(image_id, k))

    async def similar_to(
        self, source: Source, *, k: int = 10, filename: str | None = None
    ) -> SimilarPage:
        """The `k` stored images most similar to a query image (POST /v1/similar; the file
        is not stored)."""
        file = await anyio.to_thread.run_sync(read_source, source, filename)  # read + hash
        return await self._run(self._similar_to(file, k))

    async def download_to(
        self, image_id: str, dest: str | os.PathLike[str], *, pipeline: str | None = None
    ) -> Path:
        """Stream the original (or a rendition) to `dest` (via `dest.part`, then renamed)."""
        path = _rendition_path(image_id, pipeline)
        target = Path(dest)
        try:
            async for attempt in AsyncRetrying(**self._retry_args()):
                with attempt:
                    request = self.http.build_request("GET", path)
                    response = await self.http.send(request, stream=True)
                    try:
                        if not response.is_success:
                            await response.aread()
                            self._ok(self._check(response))
                        with _part(target).open("wb") as out:
                            async for chunk in response.aiter_bytes():
                                out.write(chunk)
                    finally:
                        await response.aclose()
        except (httpx.TransportError, _RetryableAnswer) as exc:
            raise self._final(exc) from exc
        _part(target).replace(target)
        return target
