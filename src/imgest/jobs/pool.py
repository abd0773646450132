"""The local engine: batches scored in a pool of worker processes, each loading the model once."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from itertools import islice

from imgest.jobs.scorer import BatchScorer, Outcome, ScorerSpec, WorkItem

_scorer: BatchScorer | None = None  # one per worker process, built by _start


def _start(spec: ScorerSpec) -> None:
    global _scorer
    _scorer = BatchScorer.from_spec(spec)


def _score(items: list[WorkItem]) -> list[Outcome]:
    assert _scorer is not None, "worker not started"
    return _scorer.score(items)


class LocalEngine:
    """`workers` processes (spawned, so no thread or ORT state is forked); 0 = in this process."""

    name = "local"

    def __init__(self, spec: ScorerSpec, *, workers: int, inline: BatchScorer | None = None):
        self.spec = spec
        self.workers = workers
        self._inline = inline

    def run(self, batches: Iterable[list[WorkItem]]) -> Iterator[list[Outcome]]:
        """Outcomes of each batch, in completion order; at most 2 batches queued per worker."""
        if self.workers == 0:
            yield from self._run_inline(batches)
            return
        # Inherited by the workers: onnxruntime reads it at import (see scoring/model.py).
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(self.spec,),
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
