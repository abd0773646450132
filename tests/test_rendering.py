"""The server's Renderer: CPU-bound work in a worker thread, within its one CPU limiter."""

from __future__ import annotations

import threading

import anyio
import pytest
from anyio import CapacityLimiter

from imgest.imaging.limits import ImageLimits
from imgest.rendering import Renderer


@pytest.mark.anyio
async def test_work_runs_off_the_loop_holding_a_token_of_the_limiter() -> None:
    renderer = Renderer(ImageLimits(), CapacityLimiter(1))
    loop_thread = threading.get_ident()

    def work(n: int) -> tuple[int, int, bool]:
        return n * 2, int(renderer.cpu.borrowed_tokens), threading.get_ident() != loop_thread

    assert await renderer.run(work, 21) == (42, 1, True)
    assert renderer.cpu.borrowed_tokens == 0


@pytest.mark.anyio
async def test_work_beyond_the_limiter_waits_for_a_token() -> None:
    renderer = Renderer(ImageLimits(), CapacityLimiter(1))
    release = threading.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(renderer.run, release.wait)
        group.start_soon(renderer.run, release.wait)
        with anyio.fail_after(5):
            while renderer.cpu.statistics().tasks_waiting < 1:
                await anyio.sleep(0.01)
        assert renderer.cpu.borrowed_tokens == 1  # the second waits: one core's worth
        release.set()
