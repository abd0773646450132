"""Serving under uvicorn: the bind-address check, connection clocks, logging, the run call.

A start-up failure (the store, catalog or model the settings name cannot be opened) happens
in the app's lifespan, inside uvicorn, which would print a traceback and exit 3 whatever the
cause. `serve` keeps the exception instead and raises it itself, before anything listens, so
it exits through the `imgest.exits` table like every other command: one line, the documented
code (an unknown storage scheme exits 2, a stopped catalog 3); a bug keeps its traceback.

uvicorn bounds idle keep-alive connections but not a client that opens a connection and sends
its request headers slowly (slow-loris), nor one that stops reading a response (its writes
wait on a full send buffer for ever); `guarded_protocol` adds both bounds to uvicorn's h11
protocol. Request heads, auth and bodies are the ASGI request guard's (api/guard.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from imgest.config import Settings
from imgest.errors import ConfigError, ImgestError, MalformedRequest, RequestHeadTooLarge

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


class _Connection(h11.Connection):
    """h11's connection, keeping the protocol error that uvicorn catches and drops."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


class _GuardedH11(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers take too long and
    dropping those whose client stops reading the response for `send_timeout`; what it cannot
    parse is answered in problem+json like every other refusal."""

    header_timeout: float = 10.0
    send_timeout: float = 30.0
    max_head_bytes: int = 16 * 1024

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own answer to bytes h11 refuses is a text/plain 400 with one sentence for
        # every cause, and it sends it even when a response has gone out already (h11 then
        # raises, and asyncio logs a fatal transport error). Here: problem+json, 431 only for
        # a head over the cap (h11 refuses a head still incomplete past
        # h11_max_incomplete_event_size: "Receive buffer too long"), and no second answer.
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.close()
            return
        cause = self.conn.error if isinstance(self.conn, _Connection) else None
        error: ImgestError
        if cause is not None and cause.error_status_hint == 431:
            error = RequestHeadTooLarge(
                f"The request line and headers are longer than {self.max_head_bytes} bytes."
            )
        else:
            # h11's reason, without the bytes it quotes ("illegal header line: bytearray(...)"):
            # the sentence names what is wrong, and the client's bytes are not echoed.
            said = str(cause).split(": bytearray(", 1)[0][:200] if cause is not None else ""
            reason = f" ({said})" if said else ""
            error = MalformedRequest(f"The request is not valid HTTP/1.1{reason}.")
        body = json.dumps(error.problem()).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=error.status, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.conn = _Connection(h11.SERVER, max_incomplete_event_size=self.max_head_bytes)
        self._header_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_send_timer()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        # The transport's buffer is full: the client has not read what the kernel holds.
        super().pause_writing()
        self._cancel_send_timer()
        self._send_timer = self.loop.call_later(self.send_timeout, self._send_deadline)

    def resume_writing(self) -> None:
        self._cancel_send_timer()
        super().resume_writing()

    def _cancel_send_timer(self) -> None:
        self._cancel("_send_timer")

    def _send_deadline(self) -> None:
        # abort, not close: close would wait to flush the very buffer the client won't read.
        # connection_lost then marks the request disconnected and releases its blocked send.
        self.transport.abort()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()  # the next request's headers get the same bound

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline)

    def _cancel_header_timer(self) -> None:
        self._cancel("_header_timer")

    def _cancel(self, name: str) -> None:
        # getattr: uvicorn may call back before connection_made has set the timers
        timer: asyncio.TimerHandle | None = getattr(self, name, None)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _header_deadline(self) -> None:
        # IDLE: no complete request head since the timer was armed (partial bytes don't count).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(settings: Settings) -> type[H11Protocol]:
    """An h11 protocol class for uvicorn with the header and send clocks and the head cap."""
    return type(
        "ImgestH11Protocol",
        (_GuardedH11,),
        {
            "header_timeout": settings.header_timeout_s,
            "send_timeout": settings.send_timeout_s,
            "max_head_bytes": settings.max_request_head_bytes,
        },
    )


ASGIApp = Callable[..., Awaitable[None]]


def keep_startup_error(app: ASGIApp, failed: list[BaseException]) -> ASGIApp:
    """`app`, whose lifespan start-up exception goes into `failed` instead of uvicorn's log."""

    async def wrapped(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def quiet(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "lifespan.startup.failed":
                message = {**message, "message": ""}  # the traceback text Starlette formats
            await send(message)

        try:
            await app(scope, receive, quiet)
        except BaseException as exc:
            failed.append(exc)
            raise

    return wrapped


def serve(settings: Settings, *, log_level: str, **uvicorn_options: Any) -> None:
    """Run the app on settings.host:port until interrupted (blocks)."""
    import uvicorn

    from imgest import logs
    from imgest.app import create_app
    from imgest.catalog.db import check_url
    from imgest.locations import describe

    check_bind(settings)
    # A catalog URL naming no known database fails here with exit 2, not later inside
    # uvicorn's lifespan with its start-up traceback.
    check_url(settings.catalog_url)
    logs.configure(settings.log_format, log_level)
    # Where the data lives, as a log record: JSON logs stay one object per line.
    logging.getLogger("imgest").info("%s", describe(settings))
    failed: list[BaseException] = []
    try:
        uvicorn.run(
            keep_startup_error(create_app(settings), failed),
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            log_config=None,  # records go through imgest.logs (text or JSON, with request ids)
            access_log=False,  # imgest.api.observe writes the access log (route, status, time)
            http=guarded_protocol(settings),
            # A head still arriving is cut at the same size the request guard checks (431).
            h11_max_incomplete_event_size=settings.max_request_head_bytes,
            timeout_keep_alive=settings.keep_alive_timeout_s,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
            timeout_graceful_shutdown=10,
            **uvicorn_options,
        )
    except SystemExit:
        if failed:  # the lifespan's own exception goes through the exit-code table
            raise failed[0] from None
        raise
