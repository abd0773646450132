"""Allowed hosts and same-origin writes (ASGI middleware over every route, auth on or off).

DNS rebinding: a web page on `attacker.example` can make its name resolve to 127.0.0.1, and the
browser then sends it requests with `Host: attacker.example`; every request whose `Host` names
a host the server does not answer to gets 400 `host_not_allowed`. The server answers to the
loopback names (no rebinding can make a browser send those for another site), the host it
binds, `public_url`'s host and `allowed_hosts` (`*`: any).

Cross-site writes: a page on any origin can make a browser POST a form (or a fetch the browser
does not preflight) to imgest. A request whose method is not GET, HEAD or OPTIONS is refused
with 403 `cross_origin_refused` when its `Origin` is neither the server's own (the host and
port it was sent to: the web UI's forms and fetches), `public_url`'s origin nor one of
`cors_origins`, or, without `Origin`, when `Sec-Fetch-Site` says another site sent it. Requests
without either header (curl, the Python client, scripts) are served as before.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from imgest.api.problems import PROBLEM_JSON
from imgest.config import Settings
from imgest.errors import CrossOriginRefused, HostNotAllowed, ImgestError
from imgest.metrics import Metrics
from imgest.server import is_loopback

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def host_name(host: str) -> str:
    """The name in a `Host` header value, lowercased, without port or brackets ("" if none)."""
    host = host.strip().lower()
    if host.startswith("["):  # [IPv6]:port
        end = host.find("]")
        return host[1:end] if end > 0 else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def origin_key(origin: str) -> str | None:
    """`scheme://host[:port]` lowercased, default port dropped; None if not such a URL."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if port is not None and str(port) == _DEFAULT_PORTS[parts.scheme]:
        netloc = netloc.rsplit(":", 1)[0]
    return f"{parts.scheme}://{netloc}"


def _netloc(key: str) -> str:
    """host[:port] of an `origin_key`."""
    return key.split("://", 1)[1]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class HostPolicy:
    """Which hosts the server answers to and which origins may send it writes."""

    def __init__(self, hosts: Iterable[str], origins: Iterable[str]) -> None:
        hosts = set(hosts)
        self.any_host = "*" in hosts
        self.hosts = frozenset(hosts - {"*"})
        origins = set(origins)
        self.any_origin = "*" in origins
        self.origins = frozenset(
            key for key in (origin_key(o) for o in origins - {"*"}) if key is not None
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPolicy:
        """Loopback (always), the bind host, public_url's host and origin, the lists set."""
        hosts = set(settings.allowed_hosts)
        bind = host_name(settings.host) or settings.host.strip("[]").lower()
        try:
            unspecified = ipaddress.ip_address(bind).is_unspecified  # 0.0.0.0, ::
        except ValueError:
            unspecified = False
        if bind and not unspecified:
            hosts.add(bind)
        origins = set(settings.cors_origins)
        if settings.public_url:
            public = urlsplit(settings.public_url)
            if public.hostname:
                hosts.add(public.hostname.lower().rstrip("."))
                origins.add(f"{public.scheme}://{public.netloc}")
        return cls(hosts, origins)

    def host_allowed(self, host: str | None) -> bool:
        """Whether the server answers to this `Host` value (None: no header, HTTP/1.0)."""
        if host is None or self.any_host:
            return True
        name = host_name(host)
        return bool(name) and (is_loopback(name) or name in self.hosts)

    def write_allowed(self, origin: str | None, fetch_site: str | None, host: str | None) -> bool:
        """Whether a state-changing request with these headers may go on."""
        if origin is None:
            # No Origin: not a browser (curl, scripts), or one that says who sent it.
            return fetch_site is None or fetch_site.lower() in ("same-origin", "none")
        if self.any_origin:
            return True
        key = origin_key(origin)  # "null" (sandboxed pages, file:) -> None: refused
        if key is None:
            return False
        if key in self.origins:
            return True
        if host is None:
            return False
        own = host.strip().lower()
        scheme = key.split("://", 1)[0]
        if own.endswith(f":{_DEFAULT_PORTS[scheme]}"):
            own = own.rsplit(":", 1)[0]
        return _netloc(key) == own  # same host and port as the request was sent to


class OriginGuard:
    """Refuses foreign hosts (400) and cross-origin writes (403) before any route runs."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.policy = HostPolicy.from_settings(settings)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        error: ImgestError | None = None
        if not self.policy.host_allowed(host):
            error = HostNotAllowed()
        elif scope["method"] not in SAFE_METHODS and not self.policy.write_allowed(
            _header(scope, b"origin"), _header(scope, b"sec-fetch-site"), host
        ):
            error = CrossOriginRefused()
        if error is None:
            await self.app(scope, receive, send)
            return
        self.metrics.problems.labels(code=error.code).inc()
        response = JSONResponse(
            error.problem(instance=scope["path"]),
            status_code=error.status,
            media_type=PROBLEM_JSON,
        )
        await response(scope, receive, send)
