"""GroupCommit: callers' items flushed together, each caller answered with its own results,
only after the flush of its batch returned."""

from __future__ import annotations

import asyncio
import os
import threading

import anyio
import pytest

from imgest.storage import commits
from imgest.storage.commits import GroupCommit


class Flusher:
    """A flush that records each batch and can be held until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.flushed: list[str] = []  # items whose flush returned, in order
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        self.entered.set()
        assert self.release.wait(10)
        if "boom" in items:
            raise OSError("the flush failed")
        self.flushed.extend(items)
        return [f"done {item}" for item in items]


async def entered(flusher: Flusher) -> None:
    with anyio.fail_after(10):
        while not flusher.entered.is_set():
            await anyio.sleep(0.001)


async def waiting(group: GroupCommit[str, str], callers: int) -> None:
    with anyio.fail_after(10):
        while len(group._queue) < callers:
            await anyio.sleep(0.001)


@pytest.mark.anyio
async def test_each_caller_gets_its_own_results_after_its_batch_is_flushed() -> None:
    flusher = Flusher()
    group = GroupCommit[str, str](flusher, name="test-commit")
    answers: dict[str, list[str]] = {}
    flushed_at_answer: dict[str, list[str]] = {}

    async def caller(name: str, items: list[str]) -> None:
        answers[name] = await group.submit(items)
        flushed_at_answer[name] = list(flusher.flushed)

    flusher.release.clear()
    async with anyio.create_task_group() as tg:
        tg.start_soon(caller, "first", ["a"])
        await entered(flusher)
        tg.start_soon(caller, "second", ["b", "c"])
        tg.start_soon(caller, "third", ["d"])
        await waiting(group, 2)
        assert answers == {}  # nobody is answered while its flush is held
        flusher.release.set()
    assert flusher.batches == [["a"], ["b", "c", "d"]]
    assert answers == {"first": ["done a"], "second": ["done b", "done c"], "third": ["done d"]}
    for name, items in (("first", ["a"]), ("second", ["b", "c"]), ("third", ["d"])):
        assert set(items) <= set(flushed_at_answer[name])  # answered after its own flush
    assert (group.batches, group.items) == (2, 4)


@pytest.mark.anyio
async def test_a_failed_flush_fails_its_batch_and_not_the_next() -> None:
    flusher = Flusher()
    group = GroupCommit[str, str](flusher, name="test-commit")
    flusher.release.clear()
    results: dict[str, object] = {}

    async def caller(item: str) -> None:
        try:
            results[item] = await group.submit([item])
        except OSError as exc:
            results[item] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(caller, "ok")
        await entered(flusher)
        tg.start_soon(caller, "boom")
        tg.start_soon(caller, "sibling")
        await waiting(group, 2)
        flusher.release.set()
    assert results["ok"] == ["done ok"]
    assert isinstance(results["boom"], OSError) and isinstance(results["sibling"], OSError)
    assert await group.submit(["later"]) == ["done later"]


@pytest.mark.anyio
async def test_a_batch_holds_at_most_max_batch_items_but_whole_callers() -> None:
    flusher = Flusher()
    group = GroupCommit[str, str](flusher, name="test-commit", max_batch=3)
    flusher.release.clear()
    async with anyio.create_task_group() as tg:
        tg.start_soon(group.submit, ["a"])
        await entered(flusher)
        for items in (["b", "c"], ["d", "e"], ["f", "g", "h", "i"]):
            tg.start_soon(group.submit, items)
            await waiting(group, len(group._queue) + 1)
        flusher.release.set()
    # a caller's items are never split; one larger than max_batch goes alone
    assert flusher.batches == [["a"], ["b", "c"], ["d", "e"], ["f", "g", "h", "i"]]


@pytest.mark.anyio
async def test_the_thread_ends_when_idle_and_starts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commits, "IDLE_S", 0.02)
    group = GroupCommit[str, str](Flusher(), name="test-commit-idle")

    def alive() -> bool:
        return any(t.name == "test-commit-idle" for t in threading.enumerate())

    assert not alive()
    assert await group.submit(["a"]) == ["done a"]
    with anyio.fail_after(5):
        while alive():
            await anyio.sleep(0.01)
    assert await group.submit(["b"]) == ["done b"]


def test_callers_on_two_event_loops_share_the_committer() -> None:
    flusher = Flusher()
    group = GroupCommit[str, str](flusher, name="test-commit")

    async def many(tag: str) -> list[list[str]]:
        return await asyncio.gather(*(group.submit([f"{tag}{i}"]) for i in range(20)))

    out: dict[str, list[list[str]]] = {}
    threads = [
        threading.Thread(target=lambda t=tag: out.__setitem__(t, asyncio.run(many(t))))
        for tag in ("x", "y")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for tag in ("x", "y"):
        assert out[tag] == [[f"done {tag}{i}"] for i in range(20)]
    assert group.items == 40


@pytest.mark.anyio
async def test_a_forked_child_starts_its_own_committer(monkeypatch: pytest.MonkeyPatch) -> None:
    group = GroupCommit[str, str](Flusher(), name="test-commit")
    assert await group.submit(["parent"]) == ["done parent"]
    # what a child forked while the committer ran sees: "running", and no thread
    group._running = True
    child = os.getpid() + 1
    monkeypatch.setattr(commits.os, "getpid", lambda: child)
    with anyio.fail_after(5):
        assert await group.submit(["child"]) == ["done child"]
