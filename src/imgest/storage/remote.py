"""What the network backends share: URL parsing, key prefixes, the store skeleton, readers.

`RemoteStore` is the BlobStore protocol for them all: it checks paths, modes and the closed
flag, makes the container once (and again, once, when a write finds it gone), strips the key
prefix from listings and maps failures to the protocol's errors. A backend supplies the calls
(`_put`, `_get`, `_head`, `_list`, `_delete`, `_close`, `_create_container`) and `_fault`,
which says what one of its library's exceptions means (a `Fault`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NoReturn, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import anyio

from imgest.storage.base import (
    BlobExistsError,
    BlobMeta,
    BlobNotFoundError,
    BlobReader,
    OneShotReader,
    PutMode,
    StoreOptions,
    StoreUnavailableError,
    split,
    validate_path,
    validate_prefix,
)

# Query parameters of storage URLs that hold secrets (Azure, S3, and SAS tokens).
SECRET_PARAMS = frozenset({"key", "secret", "session_token", "connection_string", "sig"})

_PREFIX = re.compile(r"[^/\\\x00]+(/[^/\\\x00]+)*")

# What a library's exception means: the blob is missing, the container (bucket) is missing, a
# create-only write found the blob there, or the service failed (unavailable).
Fault = Literal["no_blob", "no_container", "exists", "failed"]
_MISSING = ("no_blob", "no_container")
_R = TypeVar("_R")


@dataclass(frozen=True)
class RemoteUrl:
    """`<scheme>://<container>[/<prefix>][?k=v&...]` taken apart (values percent-decoded)."""

    scheme: str
    container: str
    prefix: str  # "" or ends with "/"
    params: dict[str, str]

    def pop(self, name: str, default: str | None = None) -> str | None:
        """Remove and return one query parameter (so unknown ones can be refused at the end)."""
        return self.params.pop(name, default)

    def options(self, defaults: StoreOptions) -> StoreOptions:
        """`timeout` and `retries` from the query, falling back to `defaults`."""
        timeout = self.pop("timeout")
        retries = self.pop("retries")
        return StoreOptions(
            timeout_s=defaults.timeout_s if timeout is None else float(timeout),
            retries=defaults.retries if retries is None else int(retries),
        )

    def public(self, query: str = "") -> str:
        """The URL to show (`store.url`): scheme, container, prefix and the harmless `query`."""
        prefix = f"/{self.prefix.rstrip('/')}" if self.prefix else ""
        return f"{self.scheme}://{self.container}{prefix}" + (f"?{query}" if query else "")

    def refuse_leftovers(self) -> None:
        """ValueError naming query parameters nobody used (values left out: may be secrets)."""
        if self.params:
            names = ", ".join(sorted(self.params))
            raise ValueError(f"unknown {self.scheme}:// store parameter(s): {names}")


class RemoteStore:
    """The BlobStore every network backend is: its public URL and key prefix, the closed
    flag, the container (or bucket) made once per store, and how a failure is reported; the
    backend's own calls are the underscored methods below."""

    def __init__(self, *, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._closed = False
        self._container_ready = False
        self._container_lock = anyio.Lock()
        self._log = logging.getLogger(type(self).__module__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # --- BlobStore ---------------------------------------------------------------------

    async def put(self, path: str, data: bytes, *, mode: PutMode = "overwrite") -> BlobMeta:
        """Write the blob; a container removed under the running store is made again, once."""
        if mode not in ("create", "overwrite"):
            raise ValueError(f"mode must be 'create' or 'overwrite', not {mode!r}")
        key = self._key(path)
        for again in (False, True):
            await self._ensure_container()
            try:
                return await self._put(path, key, data, mode)
            except Exception as exc:
                fault = self._fault(exc)
                if fault == "exists" and mode == "create":
                    raise BlobExistsError(path) from None
                if fault != "no_container" or again:
                    self._raise(f"put {path!r}", exc, fault)
            self._log.warning("container of %r vanished; creating it again", self)
            self._container_ready = False
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, path: str) -> BlobReader:
        """Open a read of the blob (BlobNotFoundError if there is none)."""
        return await self._about("get", path, self._get)

    async def head(self, path: str) -> BlobMeta:
        """The blob's metadata (BlobNotFoundError if there is none)."""
        return await self._about("head", path, self._head)

    async def list(self, prefix: str = "") -> AsyncIterator[BlobMeta]:
        """The blobs whose path starts with `prefix` (a plain string prefix); none when the
        container does not exist yet."""
        validate_prefix(prefix)
        self._check_open()
        try:
            async for meta in self._list(self.prefix + prefix):
                yield dataclasses.replace(meta, path=meta.path[len(self.prefix) :])
        except Exception as exc:
            if self._fault(exc) not in _MISSING:
                self._raise(f"list {prefix!r}", exc, self._fault(exc))

    async def delete(self, path: str) -> None:
        """Delete the blob; a missing one is fine."""
        key = self._key(path)
        try:
            await self._delete(key)
        except Exception as exc:
            if self._fault(exc) not in _MISSING:
                self._raise(f"delete {path!r}", exc, self._fault(exc))

    async def close(self) -> None:
        """Release the backend's connections (once; the store refuses calls after)."""
        if self._closed:
            return
        self._closed = True
        await self._close()

    # --- shared steps ------------------------------------------------------------------

    def _key(self, path: str) -> str:
        """The object key of `path` (validated); the store must be open."""
        key = self.prefix + validate_path(path)
        self._check_open()
        return key

    async def _about(self, what: str, path: str, call: Callable[[str, str], Awaitable[_R]]) -> _R:
        """`call(path, key)`, a call about one blob: a missing one is BlobNotFoundError."""
        key = self._key(path)
        try:
            return await call(path, key)
        except Exception as exc:
            self._raise(f"{what} {path!r}", exc, self._fault(exc), missing=path)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailableError(f"store {self.url} is closed")

    def _raise(
        self, what: str, exc: Exception, fault: Fault | None, *, missing: str | None = None
    ) -> NoReturn:
        """Raise what `exc` means: BlobNotFoundError for the `missing` path, the exception
        itself when it is no library failure (ours, or a bug), else StoreUnavailableError."""
        if missing is not None and fault in _MISSING:
            raise BlobNotFoundError(missing) from None
        if fault is None:
            raise exc
        raise self._unavailable(what, exc) from exc

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailableError:
        # The libraries' messages name the blob URL and the error code, never the key.
        self._log.warning("%r: %s failed: %s", self, what, type(exc).__name__)
        return StoreUnavailableError(f"{self!r}: {what} failed: {type(exc).__name__}: {exc}")

    async def _ensure_container(self) -> None:
        """`_create_container` once per store (its callers may race: one does it)."""
        if self._container_ready:
            return
        async with self._container_lock:
            if self._container_ready:
                return
            await self._create_container()
            self._container_ready = True

    # --- the backend's calls -----------------------------------------------------------

    def _fault(self, exc: Exception) -> Fault | None:
        """What the library's `exc` means; None for anything that is not the library's."""
        raise NotImplementedError

    async def _create_container(self) -> None:
        """Create the (private) container if it is missing."""
        raise NotImplementedError

    async def _put(self, path: str, key: str, data: bytes, mode: PutMode) -> BlobMeta:
        """Write `data` at `key`; with mode="create", atomically only if it is missing."""
        raise NotImplementedError

    async def _get(self, path: str, key: str) -> BlobReader:
        raise NotImplementedError

    async def _head(self, path: str, key: str) -> BlobMeta:
        raise NotImplementedError

    def _list(self, key_prefix: str) -> AsyncIterator[BlobMeta]:
        """The objects under `key_prefix`, each BlobMeta with its whole key as path."""
        raise NotImplementedError

    async def _delete(self, key: str) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError


def parse_remote_url(url: str, scheme: str, container: re.Pattern[str]) -> RemoteUrl:
    """Split a remote store URL; ValueError (without the URL, which may hold a key) if bad.

    `container` is the pattern a container or bucket name must match.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != scheme or parts.fragment or not parts.netloc:
        raise ValueError(f"not a {scheme} store URL (want {scheme}://<container>[/<prefix>]?...)")
    if "@" in parts.netloc or ":" in parts.netloc:
        raise ValueError(f"{scheme}:// URLs name credentials in the query, not before the host")
    if not container.fullmatch(parts.netloc):
        raise ValueError(f"invalid container or bucket name in the {scheme}:// URL")
    prefix = unquote(parts.path).strip("/")
    bad_segment = any(p in (".", "..") for p in prefix.split("/"))
    if (prefix and not _PREFIX.fullmatch(prefix)) or bad_segment:
        raise ValueError(f"invalid key prefix in the {scheme}:// URL: {prefix!r}")
    params: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in params:
            raise ValueError(f"{scheme}:// store parameter {name!r} given more than once")
        params[name] = value
    return RemoteUrl(scheme, parts.netloc, f"{prefix}/" if prefix else "", params)


async def run_bounded(jobs: Sequence[Callable[[], Awaitable[None]]], limit: int) -> None:
    """Run `jobs` with at most `limit` at once (each starts only when it holds a slot).

    The first failure cancels the others and is raised as itself, not in an exception group,
    so callers map it like any other error from the library.
    """
    slots = anyio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with slots:
            await job()

    try:
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(one, job)
    except BaseExceptionGroup as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


def redact(url: str) -> str:
    """`url` with secret query values and any password replaced by `***`, for display."""
    parts = urlsplit(url)
    if not parts.query and parts.password is None:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = urlencode(
        [(k, "***" if k in SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, True)],
        quote_via=quote,
        safe="*/:",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def utc(moment: datetime) -> datetime:
    """`moment` as timezone-aware UTC (a naive datetime from a library is taken as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def bare_etag(etag: str | None) -> str | None:
    """The etag without the quotes some APIs keep around it, so every call reports the same."""
    return etag.strip('"') if etag else None


class ChunkedReader(OneShotReader):
    """A BlobReader over a network body: re-chunks it to at most `chunk_size`, consumed once.

    `chunks` yields the body in whatever pieces the library gives; `release` frees the
    connection when the stream is closed early or never read (it is awaited once).
    """

    def __init__(
        self,
        meta: BlobMeta,
        chunks: AsyncIterator[bytes],
        release: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(meta)
        self._body = chunks
        self._release = release

    async def _chunks(self, chunk_size: int) -> AsyncIterator[bytes]:
        try:
            async for piece in self._body:
                for chunk in split(piece, chunk_size):
                    yield chunk
        finally:
            await self._release()

    async def read(self) -> bytes:
        """The whole body."""
        self._take()
        try:
            return b"".join([piece async for piece in self._body])
        finally:
            await self._release()
