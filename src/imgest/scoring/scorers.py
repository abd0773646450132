"""The server's scorers: one MicroBatcher per loaded model version, the active one by default.

Models load on first use (off the event loop) and stay loaded. The active model is re-read
from the registry at most every `active_ttl` seconds, so `imgest models activate` reaches
every replica without a restart.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import KW_ONLY, dataclass, field

import anyio.to_thread

from imgest.errors import ModelUnavailable
from imgest.scoring.batcher import Batching, BatchStats, MicroBatcher
from imgest.scoring.model import Model, ModelSpecError
from imgest.scoring.registry import ModelRegistry, RegisteredModel


@dataclass(eq=False)  # one identity, as a plain class has
class Scorers:
    """Hands out the MicroBatcher for `NAME[@VERSION]` or for the active model."""

    registry: ModelRegistry
    _: KW_ONLY
    batching: Batching = field(default_factory=Batching)
    threads: int = 0
    device: str = "cpu"
    active_ttl: float = 5.0
    preloaded: Model | None = None  # used for the active model instead of loading it
    _batchers: dict[str, MicroBatcher] = field(default_factory=dict, init=False)  # by version
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False)
    _active: RegisteredModel | None = field(default=None, init=False)
    _active_at: float = field(default=0.0, init=False)

    @property
    def running(self) -> bool:
        """Whether a model is loaded and its batcher is up (the active one after start)."""
        return any(b.running for b in self._batchers.values())

    async def start(self) -> MicroBatcher:
        """Load the active model and start its batcher (fails if none is active)."""
        return await self.get(None)

    async def stop(self) -> None:
        """Stop every batcher."""
        for batcher in self._batchers.values():
            await batcher.stop()
        self._batchers.clear()

    async def get(self, ref: str | None) -> MicroBatcher:
        """The batcher of model `ref` (NAME[@VERSION]), or of the active model for None."""
        entry = await self._active_entry() if ref is None else await self._resolve(ref)
        batcher = self._batchers.get(entry.version)
        if batcher is not None:
            return batcher
        lock = self._locks.setdefault(entry.version, asyncio.Lock())
        async with lock:
            batcher = self._batchers.get(entry.version)
            if batcher is None:
                batcher = await self._start(entry)
                self._batchers[entry.version] = batcher
        return batcher

    def batch_stats(self) -> dict[str, BatchStats]:
        """Batch statistics per loaded model, keyed `name@version12`."""
        return {f"{b.model.name}@{b.model.version[:12]}": b.stats for b in self._batchers.values()}

    async def _start(self, entry: RegisteredModel) -> MicroBatcher:
        preloaded = self.preloaded
        if preloaded is not None and preloaded.version == entry.version:
            model = preloaded
        else:
            try:
                model = await self.registry.load(entry, threads=self.threads, device=self.device)
            except ModelSpecError as exc:  # registered once, unloadable now: our fault
                raise ModelUnavailable(f"Model {entry.ref} cannot be loaded: {exc}") from None
        batcher = MicroBatcher(model, self.batching)
        await batcher.start()
        return batcher

    async def _resolve(self, ref: str) -> RegisteredModel:
        return await anyio.to_thread.run_sync(self.registry.resolve, ref)

    async def _active_entry(self) -> RegisteredModel:
        now = time.monotonic()
        if self._active is None or now - self._active_at >= self.active_ttl:
            active = await anyio.to_thread.run_sync(self.registry.active)
            if active is None:
                raise ModelUnavailable("No model is active; see `imgest models activate`.")
            self._active, self._active_at = active, now
        return self._active
