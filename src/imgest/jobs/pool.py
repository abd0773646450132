"""The local engine: batches scored in a pool of worker processes, each loading the model once.

With `pin` (the default of `imgest rescore`), each worker is bound to a core of its own when
there are at least as many allowed cores as workers: a worker that stays on one core keeps its
caches (9.2 vs 9.9 CPU ms per image, docs/benchmarks.md, tuning log). The Ray engine does the
same for the actors that run on the driver's machine (`core_seats`, `take_seat`).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import IO, Any, TypeVar

from imgest.errors import JobError
from imgest.jobs.scorer import BatchScorer, Outcome, ScorerSpec, WorkItem

_B = TypeVar("_B")
_R = TypeVar("_R")

# What a process spawned by run_spawned does with each batch: built once, by its `start`.
_worker: Callable[[Any], Any] | None = None


def _begin(start: Callable[..., Callable[[Any], Any]], args: tuple[object, ...]) -> None:
    global _worker
    _worker = start(*args)


def _work(batch: object) -> Any:
    assert _worker is not None, "worker not started"
    return _worker(batch)


def _start(spec_file: str, seats: Seats | None = None) -> Callable[[list[WorkItem]], list[Outcome]]:
    take_seat(seats)
    with open(spec_file, "rb") as fh:
        spec = pickle.load(fh)  # written by this job's driver (LocalEngine._run_pool)
    return BatchScorer.from_spec(spec).score


@dataclass(frozen=True)
class Seats:
    """One core each for the processes of a job: a seat file per core of `cores` in the
    folder `folder`, on the machine `host` (processes elsewhere are not pinned)."""

    folder: str
    cores: tuple[int, ...]
    host: str


@contextmanager
def core_seats(workers: int, enabled: bool) -> Iterator[Seats | None]:
    """Seats for `workers` processes, or None where they cannot each have a core (or pinning
    is off); the folder is removed afterwards."""
    cores = cores_to_pin(workers) if enabled else ()
    if not cores:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="imgest-seats-")
    try:
        yield Seats(folder, cores, socket.gethostname())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_held_seat: IO[str] | None = None  # this process's seat, held open for its lifetime


def take_seat(seats: Seats | None) -> int | None:
    """Bind this process to a free core of `seats` and hold the seat while it lives; the
    core, or None (no seats, another machine, or every seat taken)."""
    global _held_seat
    if seats is None or socket.gethostname() != seats.host:
        return None
    taken = pin_to_free_core(seats.folder, seats.cores)
    if taken is None:
        return None
    _held_seat = taken[1]
    return taken[0]


def pin_to_free_core(seats: str, cores: tuple[int, ...]) -> tuple[int, IO[str]] | None:
    """Bind this process to the first of `cores` whose seat file in the folder `seats` no
    other process holds (an exclusive flock, released when the holder exits, so a replaced
    worker frees its core); the core and the open seat file to keep, or None when every
    seat is taken."""
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


def run_spawned(
    job: str,
    workers: int,
    start: Callable[..., Callable[[_B], _R]],
    args: tuple[object, ...],
    todo: Iterator[_B],
) -> Iterator[_R]:
    """The result for each batch of `todo`, in completion order, from `workers` spawned
    processes, each of which calls `start(*args)` once (a module-level function, so that it
    pickles) for what it does with a batch; at most 2 batches queued per worker. A worker that
    dies ends the `job` with a JobError; the pool is shut down after."""
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_begin,
        initargs=(start, args),
    )
    try:
        running: set[Future[_R]] = {pool.submit(_work, b) for b in islice(todo, 2 * workers)}
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                running.update(pool.submit(_work, b) for b in islice(todo, 1))
    except BrokenProcessPool as exc:
        raise JobError(
            f"a {job} worker process died (killed, out of memory, or it could not start: see "
            "its error above); finished batches are recorded, run the command again to go on"
        ) from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
        with core_seats(self.workers, self.pin) as seats:
            yield from self._run_pool(batches, seats)

    def _run_pool(
        self, batches: Iterable[list[WorkItem]], seats: Seats | None
    ) -> Iterator[list[Outcome]]:
        # The spec (megabytes of model weights) reaches the workers in a file, not in their
        # start-up arguments: a spawned child that dies before reading those (a script
        # without a __main__ guard, say) would leave this process blocked for ever writing
        # them into a pipe whose reading end multiprocessing keeps open here until it is done.
        with tempfile.TemporaryDirectory(prefix="imgest-spec-") as folder:
            spec_file = os.path.join(folder, "spec.pickle")
            with open(spec_file, "wb") as fh:
                pickle.dump(self.spec, fh)
            args = (spec_file, seats)
            yield from run_spawned("rescore", self.workers, _start, args, iter(batches))

    def _run_inline(self, batches: Iterable[list[WorkItem]]) -> Iterator[list[Outcome]]:
        scorer = self._inline or BatchScorer.from_spec(self.spec)
        try:
            for batch in batches:
                yield scorer.score(batch)
        finally:
            scorer.close()
