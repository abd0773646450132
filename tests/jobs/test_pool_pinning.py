"""Local rescore workers bound to a core each (imgest.jobs.pool)."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from imgest.jobs.pool import core_seats, cores_to_pin, pin_to_free_core, take_seat


def _affinity_after_a_while() -> tuple[int, ...]:
    time.sleep(0.5)  # both tasks run at once, so each lands in its own worker
    return tuple(sorted(os.sched_getaffinity(0)))


def test_each_worker_gets_a_core_of_its_own() -> None:
    cores = cores_to_pin(2)
    with core_seats(2, enabled=True) as seats:
        if seats is None:
            pytest.skip("needs 2 allowed cores and sched_setaffinity")
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            2, mp_context=context, initializer=take_seat, initargs=(seats,)
        ) as pool:
            seen = [f.result() for f in [pool.submit(_affinity_after_a_while) for _ in range(2)]]
    assert sorted(seen) == [(cores[0],), (cores[1],)]


def test_no_pinning_with_more_workers_than_cores() -> None:
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    assert cores_to_pin(allowed + 1) == ()
    assert cores_to_pin(0) == ()


def test_seat_files_give_each_taker_its_own_core(tmp_path: Path) -> None:
    cores = cores_to_pin(2)[:2]
    if not cores:
        pytest.skip("needs 2 allowed cores and sched_setaffinity")
    before = os.sched_getaffinity(0)
    held = []
    try:
        first = pin_to_free_core(str(tmp_path), cores)
        assert first is not None and os.sched_getaffinity(0) == {first[0]}
        held.append(first[1])
        os.sched_setaffinity(0, before)
        second = pin_to_free_core(str(tmp_path), cores)  # a flock conflicts across opens
        assert second is not None and second[0] != first[0]
        held.append(second[1])
        os.sched_setaffinity(0, before)
        assert pin_to_free_core(str(tmp_path), cores) is None  # every seat taken: no pinning
        assert os.sched_getaffinity(0) == before
        first[1].close()  # a seat is free again once its holder lets go (or exits)
        again = pin_to_free_core(str(tmp_path), cores)
        assert again is not None and again[0] == first[0]
        held.append(again[1])
    finally:
        os.sched_setaffinity(0, before)
        for seat in held:
            seat.close()
