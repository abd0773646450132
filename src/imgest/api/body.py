"""Request bodies read against the clock: a stalled or trickling upload gets 408, not a slot."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio

from imgest.errors import RequestTimeout


@dataclass(frozen=True)
class BodyTimeouts:
    """How long a body may stall, and how slowly it may arrive (see the settings)."""

    body_idle_timeout_s: float = 30.0
    body_min_bytes_per_s: int = 1024  # checked once the body has taken body_idle_timeout_s


async def timed_body(
    chunks: AsyncIterator[bytes],
    timeouts: BodyTimeouts,
    on_chunk: Callable[[int], None] = lambda n: None,
) -> AsyncIterator[bytes]:
    """Yield `chunks`; raise RequestTimeout when one stalls or the average rate is too low."""
    idle = timeouts.body_idle_timeout_s
    min_rate = timeouts.body_min_bytes_per_s
    started = time.monotonic()
    received = 0
    iterator = aiter(chunks)
    while True:
        try:
            with anyio.fail_after(idle):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout(
                f"No body data arrived for {idle:g} s after {received} bytes."
            ) from None
        received += len(chunk)
        on_chunk(len(chunk))
        elapsed = time.monotonic() - started
        if min_rate and elapsed > idle and received < min_rate * elapsed:
            raise RequestTimeout(
                f"The body arrived at {received / elapsed:.0f} bytes/s, slower than the "
                f"minimum of {min_rate} bytes/s."
            )
        yield chunk
