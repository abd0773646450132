"""The request guard (ASGI middleware): one place that bounds every request before a route runs.

In this order, for every HTTP request whatever its route: the request head must fit
`max_request_head_bytes` (431); headers that come once come once, and a body comes without a
content coding (400, 415); the caller must hold the route's scope (`access`), checked from
the Authorization header before a byte of the body is read (401/403); a declared
Content-Length must fit the route's cap (413); then the body goes through one `BodyClock`
(idle timeout, minimum rate, byte cap: 408/413). The upload route streams its body to the app
under `max_request_bytes` (its multipart reader adds the per-file and per-field caps); every
other route's body is read here, whole, under `max_body_bytes`, before the app runs, so no
route (JSON or otherwise, present or future) can read more or wait longer.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgest.api.auth import authenticate, check_scope, scopes_for
from imgest.api.body import BodyClock, BodyTimeouts
from imgest.api.problems import problem_response
from imgest.catalog.keys import ApiKey, KeyStore
from imgest.config import Settings
from imgest.errors import (
    ImgestError,
    MalformedRequest,
    RequestHeadTooLarge,
    RequestTooLarge,
    UnsupportedContentEncoding,
)

PROBE_PATHS = frozenset({"/healthz", "/readyz"})
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
DOC_ASSETS = "/docs/"  # /docs/init.js, /docs/assets/...: the pages' own files
METRICS_PATH = "/metrics"
# Headers a request carries at most once.
SINGLE_HEADERS = ("authorization", "content-type", "content-encoding", "idempotency-key")
# Routes whose body the app reads as a stream, under max_request_bytes: the upload, and the
# search by a query image (the same multipart reader and limits).
STREAMED = frozenset({("POST", "/v1/images"), ("POST", "/v1/similar")})


def access(settings: Settings, method: str, path: str) -> tuple[str, ...] | None:
    """The scopes (any of) a request needs, or None when it is open to anyone.

    Everything not named open here needs the scope of its method (`auth.METHOD_SCOPES`), so
    a route added later is closed by default.
    """
    if settings.auth == "off" or path in PROBE_PATHS:
        return None
    if path == METRICS_PATH:
        return ("admin",) if settings.metrics == "admin" else None
    if path in DOC_PATHS or path.startswith(DOC_ASSETS):
        return ("read",) if settings.api_docs == "read" else None
    return scopes_for(method)


def body_cap(settings: Settings, method: str, path: str) -> int:
    """The most body bytes a request to this route may send."""
    if (method, path) in STREAMED:
        return settings.max_request_bytes
    return settings.max_body_bytes


def head_bytes(scope: Scope) -> int:
    """Bytes of the request line and header block as sent (give or take optional spaces)."""
    target = len(scope.get("raw_path") or scope["path"].encode())
    if query := scope.get("query_string", b""):
        target += 1 + len(query)
    line = len(scope["method"]) + 1 + target + len(" HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


def declared_length(headers: Headers) -> int | None:
    """The Content-Length if it is one plain number (the HTTP server refuses the others)."""
    value = headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


def check_headers(headers: Headers) -> None:
    """MalformedRequest for a header sent twice that must come once (a proxy in front may
    read the last where this server reads the first); UnsupportedContentEncoding for a body
    in a content coding (it would be read as if it were not)."""
    for name in SINGLE_HEADERS:
        if (count := len(headers.getlist(name))) > 1:
            raise MalformedRequest(f"The request has {count} {name} headers; send one.")
    coding = headers.get("content-encoding", "").strip().lower()
    if coding not in ("", "identity") and has_body(headers):
        raise UnsupportedContentEncoding(
            f"The body is sent with Content-Encoding {coding[:40]!r}; this server reads bodies "
            "as sent: send it without one (identity)."
        )


def has_body(headers: Headers) -> bool:
    """Whether the request announces a body (a length above 0, or chunked)."""
    return bool(declared_length(headers)) or "transfer-encoding" in headers


def route_of(routes: Any, scope: Scope) -> Any:
    """The route a request would reach (for the access log of a refusal), else None."""
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI 0.16x: an included router
        if inner is not None:
            found = route_of(inner.routes, scope)
            if found is not None:
                return found
            continue
        match, child = route.matches(scope)
        if match is Match.FULL:
            return child.get("route", route)
    return None


def replaying(first: Message, receive: Receive) -> Receive:
    """A receive that answers `first` once, then passes through (to wait for a disconnect)."""
    pending: list[Message] = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


class RequestGuard:
    """Wraps the app: head cap, auth before body, body cap and body clock for every route."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.timeouts = BodyTimeouts(settings.body_idle_timeout_s, settings.body_min_bytes_per_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        method, path = scope["method"], scope["path"]
        cap = body_cap(self.settings, method, path)
        try:
            if head_bytes(scope) > self.settings.max_request_head_bytes:
                raise RequestHeadTooLarge(
                    f"The request line and headers take {head_bytes(scope)} bytes; the most "
                    f"accepted is {self.settings.max_request_head_bytes}."
                )
            check_headers(request.headers)
            await self._authorize(scope, request, access(self.settings, method, path))
            declared = declared_length(request.headers)
            if declared is not None and declared > cap:
                raise RequestTooLarge(
                    f"The request body ({declared} bytes) is larger than the {cap} bytes "
                    "this route accepts."
                )
        except ImgestError as exc:
            await self._refuse(exc, request, send, outstanding=has_body(request.headers))
            return
        if (method, path) in STREAMED:
            metrics = request.app.state.metrics
            clock = BodyClock(receive, self.timeouts, cap, metrics.body_bytes.inc)
            await self.app(scope, clock, send)  # the route raises the clock's refusals
            return
        if not has_body(request.headers):  # HTTP/1.1: no length, not chunked: no body
            empty: Message = {"type": "http.request", "body": b"", "more_body": False}
            await self.app(scope, replaying(empty, receive), send)
            return
        clock = BodyClock(receive, self.timeouts, cap)
        try:
            first = await self._read_body(clock)
        except ImgestError as exc:
            await self._refuse(exc, request, send, outstanding=not clock.complete)
            return
        await self.app(scope, replaying(first, receive), send)

    async def _authorize(
        self, scope: Scope, request: Request, any_of: tuple[str, ...] | None
    ) -> None:
        """Verify the key (a required one, or an offered one on an open route) into state."""
        header = request.headers.get("authorization")
        if self.settings.auth == "off" or (any_of is None and header is None):
            return
        keys: KeyStore = request.app.state.keys
        key: ApiKey | None
        try:
            key = await authenticate(keys, header)
        except ImgestError:
            if any_of is not None:
                raise
            key = None  # an open route: a bad key is no key
        if key is not None:
            scope.setdefault("state", {})["api_key"] = key
            if any_of is not None:
                check_scope(key, any_of)

    @staticmethod
    async def _read_body(clock: BodyClock) -> Message:
        """The whole body as one message (or the disconnect that cut it short)."""
        chunks: list[bytes] = []
        while True:
            message = await clock()
            if message["type"] != "http.request":
                return message
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    @staticmethod
    async def _refuse(exc: ImgestError, request: Request, send: Send, *, outstanding: bool) -> None:
        """Answer the refusal; hang up after it when the body was not (all) read."""
        if "route" not in request.scope:  # refused before routing: log the route anyway
            route = route_of(request.app.router.routes, request.scope)
            if route is not None:
                request.scope["route"] = route
        response = problem_response(exc, request)
        if outstanding or isinstance(exc, RequestHeadTooLarge):
            response.headers["Connection"] = "close"

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await response(request.scope, nothing, send)
