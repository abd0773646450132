"""Local rescore workers bound to a core each (imgest.jobs.pool)."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from imgest.jobs.pool import cores_to_pin, pin_to_next_core


def _affinity_after_a_while() -> tuple[int, ...]:
    time.sleep(0.5)  # both tasks run at once, so each lands in its own worker
    return tuple(sorted(os.sched_getaffinity(0)))


def test_each_worker_gets_a_core_of_its_own() -> None:
    cores = cores_to_pin(2)
    if not cores:
        pytest.skip("needs 2 allowed cores and sched_setaffinity")
    context = multiprocessing.get_context("spawn")
    seat = context.Value("i", 0)
    with ProcessPoolExecutor(
        2, mp_context=context, initializer=pin_to_next_core, initargs=(seat, cores)
    ) as pool:
        seen = [f.result() for f in [pool.submit(_affinity_after_a_while) for _ in range(2)]]
    assert sorted(seen) == [(cores[0],), (cores[1],)]


def test_no_pinning_with_more_workers_than_cores() -> None:
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    assert cores_to_pin(allowed + 1) == ()
    assert cores_to_pin(0) == ()
