"""Micro-batching: images from concurrent requests scored together, with a bounded wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

import anyio.to_thread
import numpy as np
import numpy.typing as npt

from imgest.catalog.records import Label
from imgest.errors import ModelUnavailable, ServiceUnavailable
from imgest.scoring.model import Model


@dataclass
class _Item:
    tensor: npt.NDArray[np.float32]
    future: asyncio.Future[tuple[Label, ...]]


@dataclass
class BatchStats:
    """Batch sizes seen so far (size -> count), for metrics and tuning."""

    sizes: Counter[int] = field(default_factory=Counter)

    @property
    def images(self) -> int:
        return sum(size * n for size, n in self.sizes.items())


class MicroBatcher:
    """Collects inputs for up to `max_wait` seconds or `max_size` items, then runs one batch.

    Like Triton's `max_queue_delay`: a lone request waits at most `max_wait`; under load,
    batches fill up and inference cost per image drops.
    """

    def __init__(
        self,
        model: Model,
        *,
        top_k: int = 5,
        max_size: int = 4,
        max_wait: float = 0.005,
        max_queue: int = 1024,
    ) -> None:
        self.model = model
        self.top_k = top_k
        self.max_size = max_size
        self.max_wait = max_wait
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the batching loop is accepting work."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="imgest-batcher")

    async def stop(self) -> None:
        """Stop the loop; pending requests get ModelUnavailable."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(ModelUnavailable())

    async def score(self, pixels: npt.NDArray[np.uint8]) -> tuple[Label, ...]:
        """Top-k labels for one image already at the model's input size."""
        if self._task is None:
            raise ModelUnavailable()
        tensor = self.model.preprocess(pixels)
        future: asyncio.Future[tuple[Label, ...]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Item(tensor, future))
        except asyncio.QueueFull:
            raise ServiceUnavailable("The scoring queue is full; retry shortly.") from None
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_size:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    while len(batch) < self.max_size and not self._queue.empty():
                        batch.append(self._queue.get_nowait())
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Item]) -> None:
        live = [item for item in batch if not item.future.done()]
        if not live:
            return
        stacked = np.stack([item.tensor for item in live])
        try:
            probs = await anyio.to_thread.run_sync(self.model.predict, stacked)
        except Exception as exc:  # the model failing is our fault: answer every waiter
            for item in live:
                if not item.future.done():
                    item.future.set_exception(ModelUnavailable(f"Scoring failed: {exc}"))
            return
        self.stats.sizes[len(live)] += 1
        for item, row in zip(live, probs, strict=True):
            if not item.future.done():
                item.future.set_result(self.model.top_k(row, self.top_k))
