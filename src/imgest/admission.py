"""Admission control for uploads: a bounded set of active uploads, a bounded FIFO wait queue.

An upload is active while its body is read and its images processed; it holds one slot and
reserves its declared body size against a byte budget. When no slot or budget is free it
waits in a FIFO queue (its body unread, so it costs a coroutine, not memory); when the queue
is full, or the wait passes `queue_timeout`, it is refused at once with 503 `server_busy`.
A per-client cap (active plus queued) answers 429 `rate_limited`. One upload alone is always
let in, whatever its size, so the budget never makes a valid request impossible.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from imgest.errors import RateLimited, ServerBusy


@dataclass(frozen=True)
class AdmissionLimits:
    """The caps (see the settings of the same names)."""

    max_active_uploads: int = 0  # 0: twice the decode threads (see `resolved`)
    max_queued_uploads: int = 64
    max_inflight_bytes: int = 128 * 1024 * 1024
    max_uploads_per_client: int = 0  # 0: no per-client cap
    queue_timeout_s: float = 30.0

    def resolved(self, cpu_threads: int) -> AdmissionLimits:
        """These limits with an automatic `max_active_uploads` made concrete.

        More active uploads than decode threads add memory (bodies held while they wait for
        a thread), not throughput; two per thread keeps them busy while others read bodies.
        """
        if self.max_active_uploads:
            return self
        return dataclasses.replace(self, max_active_uploads=2 * cpu_threads)


@dataclass
class _Waiter:
    nbytes: int
    granted: asyncio.Future[None]


class Admission:
    """Grants upload slots in arrival order under the count and byte limits."""

    def __init__(self, limits: AdmissionLimits) -> None:
        if limits.max_active_uploads < 1:
            raise ValueError("resolve max_active_uploads first (AdmissionLimits.resolved)")
        self.limits = limits
        self.active = 0
        self.inflight_bytes = 0
        self._waiters: deque[_Waiter] = deque()
        self._clients: Counter[str] = Counter()

    @property
    def queued(self) -> int:
        """Uploads waiting for a slot."""
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self, client: str, nbytes: int) -> AsyncIterator[None]:
        """Hold an upload slot with `nbytes` reserved for the duration of the block."""
        cap = self.limits.max_uploads_per_client
        if cap and self._clients[client] >= cap:
            raise RateLimited(f"This client already has {cap} uploads in progress; retry later.")
        self._clients[client] += 1
        try:
            await self._acquire(nbytes)
            try:
                yield
            finally:
                self._release(nbytes)
        finally:
            self._clients[client] -= 1
            if not self._clients[client]:
                del self._clients[client]

    def _fits(self, nbytes: int) -> bool:
        if self.active == 0:
            return True
        return (
            self.active < self.limits.max_active_uploads
            and self.inflight_bytes + nbytes <= self.limits.max_inflight_bytes
        )

    def _take(self, nbytes: int) -> None:
        self.active += 1
        self.inflight_bytes += nbytes

    async def _acquire(self, nbytes: int) -> None:
        if not self._waiters and self._fits(nbytes):
            self._take(nbytes)
            return
        if len(self._waiters) >= self.limits.max_queued_uploads:
            raise ServerBusy(
                f"All {self.limits.max_active_uploads} upload slots are busy and "
                f"{self.limits.max_queued_uploads} uploads are waiting; retry later."
            )
        waiter = _Waiter(nbytes, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            with anyio.move_on_after(self.limits.queue_timeout_s):
                await waiter.granted
        except BaseException:  # cancelled (client gone, shutdown): give back what we hold
            self._forget(waiter)
            raise
        if not (waiter.granted.done() and not waiter.granted.cancelled()):
            self._forget(waiter)
            raise ServerBusy(
                f"No upload slot became free within {self.limits.queue_timeout_s:g} s; retry later."
            )

    def _forget(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._wake()  # the head may have been blocking smaller uploads behind it
        elif waiter.granted.done() and not waiter.granted.cancelled():
            self._release(waiter.nbytes)  # granted just as it gave up

    def _release(self, nbytes: int) -> None:
        self.active -= 1
        self.inflight_bytes -= nbytes
        self._wake()

    def _wake(self) -> None:
        # FIFO: the head waits until it fits, so a large upload is not starved by small ones.
        while self._waiters:
            head = self._waiters[0]
            if head.granted.done():
                self._waiters.popleft()
                continue
            if not self._fits(head.nbytes):
                return
            self._waiters.popleft()
            self._take(head.nbytes)
            head.granted.set_result(None)
