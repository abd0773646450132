"""Micro-batching: images from concurrent requests scored together, with a bounded wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio.to_thread
import numpy as np
import numpy.typing as npt

from imgest.catalog.records import Label
from imgest.errors import ModelPipelineMismatch, ModelUnavailable, ScoringQueueFull
from imgest.imaging.steps import Aggregate
from imgest.scoring.model import Model, Scored, aggregate, pooled_embedding


@dataclass
class _Item:
    tensors: list[npt.NDArray[np.float32]]  # one image's model inputs (several when tiled)
    how: Aggregate
    future: asyncio.Future[Scored]


@dataclass
class BatchStats:
    """What the batcher has done, in plain counters (read by metrics exporters).

    `sizes` is the exact histogram of batch sizes, counted in model inputs (a 2x2-tiled
    image is 4): size -> number of batches. `rejected` counts images refused because the
    queue was full; `queued` is the number of model inputs waiting right now.
    """

    sizes: Counter[int] = field(default_factory=Counter)
    images_scored: int = 0
    rejected: int = 0
    failed_batches: int = 0
    queued: int = 0

    @property
    def images(self) -> int:
        """Model inputs scored so far (sum of batch sizes)."""
        return sum(size * n for size, n in self.sizes.items())

    @property
    def batches(self) -> int:
        """Batches run so far."""
        return sum(self.sizes.values())

    def snapshot(self) -> dict[str, object]:
        """A JSON-able copy: {"sizes": {size: count}, "batches", "inputs", ...}."""
        return {
            "sizes": dict(sorted(self.sizes.items())),
            "batches": self.batches,
            "inputs": self.images,
            "images": self.images_scored,
            "rejected": self.rejected,
            "failed_batches": self.failed_batches,
            "queued": self.queued,
        }


class MicroBatcher:
    """Collects inputs for up to `max_wait` seconds or `max_size` inputs, then runs one batch.

    Like Triton's `max_queue_delay`: a lone request waits at most `max_wait`; under load,
    batches fill up and inference cost per image drops. At most `max_queue` inputs wait; an
    image that would go past it is refused at once with ScoringQueueFull (503, Retry-After).
    An image's inputs always go into one batch, so a batch may exceed `max_size` only when a
    single image has more inputs than that.
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
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._pending: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
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
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(ModelUnavailable())
        self.stats.queued = 0

    async def score(self, pixels: npt.NDArray[np.uint8]) -> tuple[Label, ...]:
        """Top-k labels for one image already at the model's input size."""
        return await self.score_inputs([pixels])

    async def score_inputs(
        self, inputs: Sequence[npt.NDArray[np.uint8]], how: Aggregate = "mean"
    ) -> tuple[Label, ...]:
        """Top-k labels for one image given as its model inputs (Rendition.model_inputs()):
        the inputs' class probabilities are aggregated (`how`: mean or max) into one answer."""
        return (await self.score_embedded(inputs, how)).top

    async def score_embedded(
        self, inputs: Sequence[npt.NDArray[np.uint8]], how: Aggregate = "mean"
    ) -> Scored:
        """score_inputs with the image's embedding (None when the model has no embedding
        output), both from the same batched run."""
        if self._task is None:
            raise ModelUnavailable()
        if not inputs:
            raise ValueError("an image needs at least one model input")
        if self.stats.queued + len(inputs) > self.max_queue:
            self.stats.rejected += 1
            raise ScoringQueueFull(
                f"{self.stats.queued} model inputs are waiting to be scored (limit "
                f"{self.max_queue}); retry shortly."
            )
        try:
            tensors = [self.model.preprocess(p) for p in inputs]
        except ValueError as exc:
            raise ModelPipelineMismatch(str(exc)) from None
        future: asyncio.Future[Scored] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(tensors, how, future))
        self.stats.queued += len(tensors)
        self._wakeup.set()
        return await future

    async def _next_batch(self) -> list[_Item]:
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while self._inputs_pending() < self.max_size:
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)
        batch = [self._pending.popleft()]
        size = len(batch[0].tensors)
        while self._pending and size + len(self._pending[0].tensors) <= self.max_size:
            item = self._pending.popleft()
            batch.append(item)
            size += len(item.tensors)
        self.stats.queued -= size
        return batch

    def _inputs_pending(self) -> int:
        return sum(len(item.tensors) for item in self._pending)

    async def _run(self) -> None:
        while True:
            await self._run_batch(await self._next_batch())

    async def _run_batch(self, batch: list[_Item]) -> None:
        live = [item for item in batch if not item.future.done()]
        if not live:
            return
        stacked = np.stack([t for item in live for t in item.tensors])
        try:
            probs, vectors = await anyio.to_thread.run_sync(self.model.infer, stacked)
        except Exception as exc:  # the model failing is our fault: answer every waiter
            self.stats.failed_batches += 1
            for item in live:
                if not item.future.done():
                    item.future.set_exception(ModelUnavailable(f"Scoring failed: {exc}"))
            return
        self.stats.sizes[len(stacked)] += 1
        self.stats.images_scored += len(live)
        start = 0
        for item in live:
            rows = slice(start, start + len(item.tensors))
            start += len(item.tensors)
            if not item.future.done():
                top = self.model.top_k(aggregate(probs[rows], item.how), self.top_k)
                embedding = None if vectors is None else pooled_embedding(vectors[rows])
                item.future.set_result(Scored(top, embedding))
