"""GroupCommit: the puts of concurrent callers written and flushed as one batch by one thread.

A durable put costs a flush of the storage device (fsync), and a flush costs about the same
for one blob as for sixteen. So LocalStore hands every put to a GroupCommit: a committer
thread takes everything queued, writes it with one flush of the filesystem (`flush`, e.g.
LocalStore's syncfs-based batch), and answers each caller with its own item's result; puts
that arrive while a batch is being flushed wait for the next one. Under load, the two puts
of each of eight concurrent uploads cost two flushes and one thread hand-off per batch
instead of two or three fsyncs and one hand-off per put.

Guarantees:
- durability: a caller is answered only after the flush that made its item durable has
  returned (`flush` returns per-item results only once the whole batch is flushed);
- isolation: `flush` returns one result per item, so an item that fails (its own write
  error, an existing blob) fails only its caller; an exception from `flush` itself (the
  flush failed: nothing in the batch is known to be durable) fails every caller of that
  batch;
- a caller that is cancelled while queued stops waiting; its item may still be written (as a
  put cancelled inside its worker thread is today); orphans are gc's.

The thread is started on the first put and ends after `IDLE_S` without work, so an idle
store (every test's) holds no thread. Callers on several event loops (the server's, a
rescore worker's portal) share one committer: answers go back through each caller's own
loop (`call_soon_threadsafe`). A forked child starts its own thread (the parent's is not
copied by fork).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741 - an item to write
R = TypeVar("R")  # its result
IDLE_S = 1.0  # the committer thread ends after this long without work
MAX_BATCH = 64  # items per flush: bounds one flush's latency under a burst


@dataclass
class _Waiter(Generic[I, R]):
    """One caller's items and where its answer goes."""

    items: Sequence[I]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[R]]


class GroupCommit(Generic[I, R]):
    """Runs `flush(items) -> results` (blocking, one result per item, in order) in one
    committer thread over the items of every caller waiting at the time."""

    def __init__(
        self, flush: Callable[[list[I]], list[R]], *, name: str, max_batch: int = MAX_BATCH
    ) -> None:
        self._flush = flush
        self._name = name
        self._max_batch = max_batch
        self._pid = os.getpid()
        self._queue: list[_Waiter[I, R]] = []
        self._wake = threading.Condition()
        self._running = False  # a committer thread is alive (guarded by _wake)
        self.batches = 0  # flushes run: what tests and benchmarks count
        self.items = 0

    async def submit(self, items: Sequence[I]) -> list[R]:
        """Queue `items` for the next flush; their results, in order, once it is done (or
        the exception the flush itself raised)."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter[I, R](items, loop, loop.create_future())
        if self._pid != os.getpid():  # a forked child: the parent's thread is not here
            self._pid, self._queue, self._wake = os.getpid(), [], threading.Condition()
            self._running = False
        with self._wake:
            self._queue.append(waiter)
            if self._running:
                self._wake.notify()
            else:
                self._running = True
                threading.Thread(target=self._commit, name=self._name, daemon=True).start()
        return await waiter.future

    def _take(self) -> list[_Waiter[I, R]] | None:
        """The next batch (whole callers, at least one, up to max_batch items), or None
        once the queue stayed empty for IDLE_S (the thread then ends)."""
        with self._wake:
            if not self._queue and not self._wake.wait_for(lambda: bool(self._queue), IDLE_S):
                self._running = False
                return None
            batch: list[_Waiter[I, R]] = []
            size = 0
            while self._queue and (
                not batch or size + len(self._queue[0].items) <= self._max_batch
            ):
                waiter = self._queue.pop(0)
                batch.append(waiter)
                size += len(waiter.items)
            return batch

    def _commit(self) -> None:
        while (batch := self._take()) is not None:
            items = [item for waiter in batch for item in waiter.items]
            try:
                results = self._flush(items)
            except BaseException as exc:  # each caller of the batch gets it
                for waiter in batch:
                    _answer(waiter, exc)
                continue
            finally:
                self.batches += 1
                self.items += len(items)
            start = 0
            for waiter in batch:
                end = start + len(waiter.items)
                _answer(waiter, results[start:end])
                start = end


def _answer(waiter: _Waiter[I, R], outcome: list[R] | BaseException) -> None:
    """Complete the caller's future on its own loop (unless it stopped waiting)."""

    def settle() -> None:
        if waiter.future.done():  # cancelled meanwhile
            return
        if isinstance(outcome, BaseException):
            waiter.future.set_exception(outcome)
        else:
            waiter.future.set_result(outcome)

    try:
        waiter.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the caller's loop is closed: nobody is waiting
        log.debug("group commit: the caller's event loop closed before its answer")
