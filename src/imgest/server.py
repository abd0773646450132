"""Serving under uvicorn: the bind-address check, a header timeout, logging, the run call.

uvicorn bounds idle keep-alive connections but not a client that opens a connection and sends
its request headers slowly (slow-loris); `header_timeout_protocol` adds that bound to uvicorn's
h11 protocol.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from imgest.config import Settings
from imgest.errors import ConfigError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name that may resolve anywhere


def check_bind(settings: Settings) -> None:
    """Refuse to serve an unauthenticated API beyond loopback unless told `insecure`."""
    if settings.auth == "off" and not settings.insecure and not is_loopback(settings.host):
        raise ConfigError(
            f"refusing to bind {settings.host!r} with auth off: anyone who can reach it could "
            "upload, read and delete images. Turn auth on (IMGEST_AUTH=keys, then "
            "`imgest keys create`), bind 127.0.0.1, or pass --insecure (IMGEST_INSECURE=1) "
            "if something in front of imgest does the authentication."
        )


class _HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers take too long."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()  # the next request's headers get the same bound

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        # IDLE: no complete request head since the timer was armed (partial bytes don't count).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """An h11 protocol class for uvicorn that closes connections idle in their headers."""
    return type("ImgestH11Protocol", (_HeaderTimeoutH11,), {"header_timeout": seconds})


def serve(settings: Settings, *, log_level: str, **uvicorn_options: Any) -> None:
    """Run the app on settings.host:port until interrupted (blocks)."""
    import uvicorn

    from imgest import logs
    from imgest.app import create_app

    check_bind(settings)
    logs.configure(settings.log_format, log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        log_config=None,  # records go through imgest.logs (text or JSON, with request ids)
        access_log=False,  # imgest.api.observe writes the access log (route, status, time)
        http=header_timeout_protocol(settings.header_timeout_s),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
        **uvicorn_options,
    )
