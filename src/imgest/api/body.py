"""Request bodies read against one clock and one cap: a stalled, trickling or oversized body is
refused (408, 413) instead of holding a slot or memory.

`BodyClock` wraps an ASGI `receive`; the request guard (`imgest.api.guard`) puts every
request's body through one, whatever route it is for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from starlette.types import Message, Receive

from imgest.errors import RequestTimeout, RequestTooLarge


@dataclass(frozen=True)
class BodyTimeouts:
    """How long a body may stall, and how slowly it may arrive (see the settings)."""

    body_idle_timeout_s: float = 30.0
    body_min_bytes_per_s: int = 1024  # checked once the body has taken body_idle_timeout_s


class BodyClock:
    """An ASGI `receive` that raises RequestTimeout when the body stalls for the idle timeout
    or averages under the minimum rate, and RequestTooLarge past `cap` bytes.

    The clock starts at the first read (an upload waiting for its slot is not timed) and stops
    once the body is complete: later calls (a response listening for the disconnect) pass
    straight through.
    """

    def __init__(
        self,
        receive: Receive,
        timeouts: BodyTimeouts,
        cap: int,
        on_chunk: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.receive = receive
        self.timeouts = timeouts
        self.cap = cap
        self.on_chunk = on_chunk
        self.received = 0
        self.complete = False
        self.started: float | None = None

    async def __call__(self) -> Message:
        if self.complete:
            return await self.receive()
        idle = self.timeouts.body_idle_timeout_s
        if self.started is None:
            self.started = time.monotonic()
        try:
            with anyio.fail_after(idle):
                message = await self.receive()
        except TimeoutError:
            raise RequestTimeout(
                f"No body data arrived for {idle:g} s after {self.received} bytes."
            ) from None
        if message["type"] != "http.request":
            self.complete = True  # http.disconnect: nothing more will come
            return message
        size = len(message.get("body", b""))
        self.received += size
        self.on_chunk(size)
        if self.received > self.cap:
            raise RequestTooLarge(f"The request body is larger than {self.cap} bytes.")
        if not message.get("more_body", False):
            self.complete = True
            return message
        min_rate = self.timeouts.body_min_bytes_per_s
        elapsed = time.monotonic() - self.started
        if min_rate and elapsed > idle and self.received < min_rate * elapsed:
            raise RequestTimeout(
                f"The body arrived at {self.received / elapsed:.0f} bytes/s, slower than the "
                f"minimum of {min_rate} bytes/s."
            )
        return message
