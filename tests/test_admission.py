"""Admission control: slots and byte budget, FIFO queue, quick refusals, nothing leaked."""

from __future__ import annotations

import asyncio
import time

import pytest

from imgest.admission import Admission, AdmissionLimits
from imgest.errors import RateLimited, ServerBusy

pytestmark = pytest.mark.anyio


def admission(**limits: float) -> Admission:
    return Admission(AdmissionLimits(**limits))  # type: ignore[arg-type]


async def hold(gate: Admission, client: str, nbytes: int, release: asyncio.Event) -> None:
    async with gate.slot(client, nbytes):
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_slots_queue_then_refuse_quickly() -> None:
    gate = admission(max_active_uploads=2, max_queued_uploads=1, queue_timeout_s=5)
    release = asyncio.Event()
    holders = [asyncio.create_task(hold(gate, f"c{i}", 10, release)) for i in range(3)]
    await settle()
    assert (gate.active, gate.queued, gate.inflight_bytes) == (2, 1, 20)
    started = time.monotonic()
    with pytest.raises(ServerBusy):
        async with gate.slot("c9", 10):
            pass
    assert time.monotonic() - started < 0.1
    release.set()
    await asyncio.gather(*holders)
    assert (gate.active, gate.queued, gate.inflight_bytes) == (0, 0, 0)


async def test_the_byte_budget_queues_and_one_upload_always_fits() -> None:
    gate = admission(max_active_uploads=10, max_inflight_bytes=100, queue_timeout_s=5)
    release = asyncio.Event()
    huge = asyncio.create_task(hold(gate, "a", 1000, release))  # over budget but alone: in
    await settle()
    assert gate.active == 1
    small = asyncio.create_task(hold(gate, "b", 1, release))
    await settle()
    assert (gate.active, gate.queued) == (1, 1)
    release.set()
    await asyncio.gather(huge, small)
    assert (gate.active, gate.inflight_bytes) == (0, 0)


async def test_fifo_a_large_head_is_not_overtaken() -> None:
    gate = admission(max_active_uploads=10, max_inflight_bytes=100, queue_timeout_s=5)
    first_release, rest_release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def record(name: str, nbytes: int) -> None:
        async with gate.slot(name, nbytes):
            order.append(name)
            await rest_release.wait()

    first = asyncio.create_task(hold(gate, "first", 60, first_release))
    await settle()
    big = asyncio.create_task(record("big", 90))
    await settle()
    small = asyncio.create_task(record("small", 20))  # would fit now, but waits its turn
    await settle()
    assert order == [] and gate.queued == 2
    first_release.set()
    await settle()
    assert order == ["big"]
    rest_release.set()
    await asyncio.gather(first, big, small)
    assert order == ["big", "small"]


async def test_waiting_too_long_is_server_busy_and_frees_the_queue() -> None:
    gate = admission(max_active_uploads=1, queue_timeout_s=0.2)
    release = asyncio.Event()
    holder = asyncio.create_task(hold(gate, "a", 1, release))
    await settle()
    started = time.monotonic()
    with pytest.raises(ServerBusy):
        async with gate.slot("b", 1):
            pass
    assert 0.15 < time.monotonic() - started < 2
    assert gate.queued == 0
    release.set()
    await holder


async def test_per_client_cap_is_429() -> None:
    gate = admission(max_active_uploads=5, max_uploads_per_client=2)
    release = asyncio.Event()
    holders = [asyncio.create_task(hold(gate, "same", 1, release)) for _ in range(2)]
    await settle()
    with pytest.raises(RateLimited):
        async with gate.slot("same", 1):
            pass
    async with gate.slot("other", 1):
        pass
    release.set()
    await asyncio.gather(*holders)
    async with gate.slot("same", 1):  # the count went back down
        pass


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    gate = admission(max_active_uploads=1, queue_timeout_s=5)
    release = asyncio.Event()
    holder = asyncio.create_task(hold(gate, "a", 5, release))
    await settle()
    waiter = asyncio.create_task(hold(gate, "b", 7, release))
    await settle()
    assert gate.queued == 1
    waiter.cancel()
    await settle()
    assert gate.queued == 0
    release.set()
    await holder
    assert (gate.active, gate.inflight_bytes) == (0, 0)


def test_automatic_active_slots_are_twice_the_decode_threads() -> None:
    assert AdmissionLimits().resolved(cpu_threads=3).max_active_uploads == 6
    assert AdmissionLimits(max_active_uploads=5).resolved(cpu_threads=3).max_active_uploads == 5
    with pytest.raises(ValueError, match="resolve"):
        Admission(AdmissionLimits())
