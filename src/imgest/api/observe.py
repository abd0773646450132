"""Per-request observation (ASGI middleware): request id, access log line, request metrics.

The request id is the client's `X-Request-ID` when it is short and plain, else a new one; it
is echoed in the response header and carried by every log record of the request. The access
log names the route template (`/v1/images/{image}`), never the query string or any header,
so tokens and cursors stay out of logs. Metrics and the access log name the method from a
fixed set (`imgest.metrics.method_label`: a made-up method is "other"), so neither the label
set nor a log line grows with what a client invents.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgest.logs import REQUEST_ID
from imgest.metrics import Metrics, method_label

log = logging.getLogger("imgest.access")

_SANE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
UNMATCHED = "unmatched"  # one label for every path no route matched (bounded cardinality)


def request_id(scope: Scope) -> str:
    """The incoming X-Request-ID if sane, else a fresh random id."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = str(value.decode("latin-1"))
            if _SANE_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestObserver:
    """Wraps the app: tags, times, counts and logs every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        token = REQUEST_ID.set(rid)
        status = 500  # what the client gets if the app raises before answering

        async def send_tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_tagged)
        finally:
            elapsed = time.perf_counter() - started
            self._record(scope, status, elapsed)
            REQUEST_ID.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", None) or UNMATCHED
        method = method_label(scope["method"])  # a fixed set: clients may invent methods
        self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
        self.metrics.latency.labels(method=method, route=route).observe(elapsed)
        client = scope.get("client")
        key = scope.get("state", {}).get("api_key")
        log.info(
            "%s %s %s %.1f ms",
            method,
            scope["path"],
            status,
            elapsed * 1000,
            extra={
                "method": method,
                "route": route,
                "path": scope["path"],
                "status": status,
                "duration_ms": round(elapsed * 1000, 1),
                "client": client[0] if client else None,
                "key_id": key.id if key is not None else None,
            },
        )
