"""The local engine: batches scored in a pool of worker processes, each loading the model once.

With `pin` (the default of `imgest rescore`), each worker is bound to a core of its own when
there are at least as many allowed cores as workers: a worker that stays on one core keeps its
caches (9.2 vs 9.9 CPU ms per image, docs/benchmarks.md, tuning log). The Ray engine does the
same for the actors that run on the driver's machine (`pin_to_free_core`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from itertools import islice
from multiprocessing.sharedctypes import Synchronized
from typing import IO

from imgest.jobs.scorer import BatchScorer, Outcome, ScorerSpec, WorkItem

_scorer: BatchScorer | None = None  # one per worker process, built by _start


def _start(
    spec: ScorerSpec, seat: Synchronized[int] | None = None, cores: tuple[int, ...] = ()
) -> None:
    global _scorer
    if seat is not None and cores:
        pin_to_next_core(seat, cores)
    _scorer = BatchScorer.from_spec(spec)


def pin_to_next_core(seat: Synchronized[int], cores: tuple[int, ...]) -> int:
    """Bind this process to the next of `cores` (the shared `seat` counts takers); the core."""
    with seat.get_lock():
        core = cores[seat.value % len(cores)]
        seat.value += 1
    os.sched_setaffinity(0, {core})
    return core


def pin_to_free_core(seats: str, cores: tuple[int, ...]) -> tuple[int, IO[str]] | None:
    """Bind this process to the first of `cores` whose seat file in the folder `seats` no
    other process holds (an exclusive flock, released when the holder exits); the core and
    the open seat file to keep, or None when every seat is taken. For processes that share
    no counter, such as Ray actors started on this machine."""
    import fcntl

    allowed = os.sched_getaffinity(0)
    for core in cores:
        if core not in allowed:
            continue
        seat = open(os.path.join(seats, f"core-{core}"), "w")  # noqa: SIM115 - held by the caller
        try:
            fcntl.flock(seat, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            seat.close()
            continue
        os.sched_setaffinity(0, {core})
        return core, seat
    return None


def cores_to_pin(workers: int) -> tuple[int, ...]:
    """The cores to pin `workers` processes to, one each; () where that cannot be done (fewer
    allowed cores than workers, or no sched_setaffinity on this OS)."""
    if not hasattr(os, "sched_setaffinity"):
        return ()
    cores = tuple(sorted(os.sched_getaffinity(0)))
    return cores if 0 < workers <= len(cores) else ()


def _score(items: list[WorkItem]) -> list[Outcome]:
    assert _scorer is not None, "worker not started"
    return _scorer.score(items)


class LocalEngine:
    """`workers` processes (spawned, so no thread or ORT state is forked); 0 = in this process."""

    name = "local"

    def __init__(
        self,
        spec: ScorerSpec,
        *,
        workers: int,
        pin: bool = False,
        inline: BatchScorer | None = None,
    ):
        self.spec = spec
        self.workers = workers
        self.pin = pin
        self._inline = inline

    def run(self, batches: Iterable[list[WorkItem]]) -> Iterator[list[Outcome]]:
        """Outcomes of each batch, in completion order; at most 2 batches queued per worker."""
        if self.workers == 0:
            yield from self._run_inline(batches)
            return
        # Inherited by the workers: onnxruntime reads it at import (see scoring/model.py).
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        context = multiprocessing.get_context("spawn")
        cores = cores_to_pin(self.workers) if self.pin else ()
        seat = context.Value("i", 0) if cores else None
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_start,
            initargs=(self.spec, seat, cores),
        )
        try:
            todo = iter(batches)
            running: set[Future[list[Outcome]]] = {
                pool.submit(_score, b) for b in islice(todo, 2 * self.workers)
            }
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                    running.update(pool.submit(_score, b) for b in islice(todo, 1))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run_inline(self, batches: Iterable[list[WorkItem]]) -> Iterator[list[Outcome]]:
        scorer = self._inline or BatchScorer.from_spec(self.spec)
        try:
            for batch in batches:
                yield scorer.score(batch)
        finally:
            scorer.close()
