"""Backfill: give every stored image large enough for one its intermediate (resumable).

The driver pages through the catalog (keyset on id) for images without an intermediate of the
configured version that get one (at least twice its long side), hands batches to worker
processes (spawned, each with its own store from `imgest.runtime`; 0 workers: this process), and
records each finished batch's rows in one transaction. A worker reads the originals, decodes
each at the DCT scale of the intermediate (imaging.intermediate), stores the intermediates
(blobs only, one `put_all_once` per batch), under write leases the driver took on their paths
before handing the batch out, spent as the batch is recorded (`imgest.storage.once`: no storage
call inside a catalog transaction, and gc leaves leased paths alone). Killing the job loses at
most the batches in flight (their blobs are orphans that gc sweeps once the leases expire);
running it again does only what is left."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

from imgest.catalog.records import RenditionRecord
from imgest.catalog.repo import Catalog, ImageFilter
from imgest.config import Settings
from imgest.errors import ImgestError, JobError
from imgest.imaging.intermediate import NAME, Intermediate
from imgest.imaging.limits import ImageLimits
from imgest.jobs.pool import run_spawned
from imgest.jobs.progress import progress_bar
from imgest.jobs.runleases import RunLeases, stop_if_down
from imgest.jobs.summary import summary_lines
from imgest.rendering import intermediate_record_of, reduce
from imgest.runtime import Runtime
from imgest.storage.base import BlobNotFoundError, BlobStore, StoreError, timed_out
from imgest.storage.once import put_all_once

PAGE = 500  # images per catalog query


@dataclass(frozen=True)
class Item:
    """One image to give an intermediate: its id and where its original is."""

    image_id: str
    original_path: str


@dataclass(frozen=True)
class Made:
    """What became of one Item: its stored intermediate's row, or why there is none."""

    image_id: str
    rendition: RenditionRecord | None = None
    error: str | None = None
    unavailable: bool = False  # blob storage did not answer in time: the job stops


@dataclass
class BackfillSummary:
    """What one backfill run did."""

    version: str
    long_side: int
    matched: int = 0  # images the filter selects
    pending: int = 0  # of those, larger than the intermediate and without one, when looked at
    made: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image id, reason)
    elapsed: float = 0.0

    def lines(self) -> list[str]:
        """A human summary, one fact per line."""
        what = f"intermediate@{self.version} (long side {self.long_side})"
        facts = [
            f"made {self.made}, failed {len(self.failed)} of {self.pending} images without {what}",
            f"elapsed {self.elapsed:.1f} s"
            + (f", {self.made / self.elapsed:.1f} images/s" if self.elapsed > 0 else ""),
        ]
        return summary_lines(
            matched=self.matched,
            pending=self.pending,
            have=f"{what} or need none",
            facts=facts,
            failed=self.failed,
        )


def run(
    settings: Settings,
    *,
    where: ImageFilter | None = None,
    workers: int = 1,
    batch_size: int = 16,
    progress: bool = False,
    on_batch: Callable[[BackfillSummary], None] | None = None,
) -> BackfillSummary:
    """Store the intermediate of every image `where` selects that is larger than one and has
    none of the configured version (`settings.intermediate`, which must not be off)."""
    runtime = Runtime(settings)
    spec = runtime.intermediate
    if spec is None:
        raise JobError("intermediates are off: set IMGEST_INTERMEDIATE to a long side, e.g. 720")
    if settings.storage_url.startswith("memory:"):
        raise JobError("backfill reads originals from storage; a memory:// store has none")
    where = where or ImageFilter()
    catalog = runtime.open_catalog()
    try:
        summary = BackfillSummary(spec.version, spec.long_side)
        summary.matched = catalog.count_images(where)
        started = time.monotonic()
        leases = RunLeases(catalog, settings.storage_timeout_s)
        batches = _leased(
            _batches(_pending(catalog, spec, where, summary), batch_size), spec, leases
        )
        try:
            # The total is every matching image: which of them need one is found on the way.
            with progress_bar("backfill", summary.matched, enabled=progress) as advance:
                for made in _engine(settings, spec, runtime.limits, workers, batches):
                    _record(catalog, made, summary, leases)
                    advance(len(made))
                    summary.elapsed = time.monotonic() - started
                    if on_batch is not None:
                        on_batch(summary)
        finally:
            leases.close()
        summary.elapsed = time.monotonic() - started
        return summary
    finally:
        catalog.close()


def _pending(
    catalog: Catalog, spec: Intermediate, where: ImageFilter, summary: BackfillSummary
) -> Iterator[Item]:
    """The images without an intermediate of this version that get one, counted
    into `summary.pending` as they are found (one keyset page in memory)."""
    for page in catalog.image_pages(NAME, spec.version, where=where, limit=PAGE):
        for p in page:
            if p.rendition_path is None and spec.size_for(p.width, p.height) and p.format == "jpeg":
                summary.pending += 1
                yield Item(p.id, p.original_path)


def _batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while batch := list(islice(items, size)):
        yield batch


def _leased(
    batches: Iterator[list[Item]], spec: Intermediate, leases: RunLeases
) -> Iterator[list[Item]]:
    """Each batch once the run holds a write lease on its intermediates' paths (W1 of the
    write path, imgest.storage.once: taken before the workers store them)."""
    for batch in batches:
        leases.take([spec.path(i.image_id) for i in batch])
        yield batch


def _record(
    catalog: Catalog, made: list[Made], summary: BackfillSummary, leases: RunLeases
) -> None:
    rows = []
    for m in made:
        if m.error is not None:
            summary.failed.append((m.image_id, m.error))
        elif m.rendition is not None:
            rows.append((m.image_id, m.rendition))
    lease = leases.of([r.path for _, r in rows])
    summary.made += catalog.add_renditions(rows, lease)
    leases.spent(lease, "intermediate")
    stop_if_down(next((m.error for m in made if m.unavailable), None))


# --- workers ---------------------------------------------------------------------------------


class Maker:
    """Reads originals and stores their intermediates, a batch at a time (one per worker)."""

    def __init__(self, settings: Settings, spec: Intermediate, limits: ImageLimits) -> None:
        self.spec = spec
        self.limits = limits
        self.loop = asyncio.new_event_loop()
        self.store: BlobStore = Runtime(settings).open_store()

    def close(self) -> None:
        """Close the store and the event loop."""
        try:
            self.loop.run_until_complete(self.store.close())
        finally:
            self.loop.close()

    def make(self, items: Sequence[Item]) -> list[Made]:
        """The outcome of each item, in order; one image's failure never fails the others."""
        reads = self.loop.run_until_complete(self._read_all([i.original_path for i in items]))
        out: dict[int, Made] = {}
        writes: list[tuple[int, str, bytes, RenditionRecord]] = []
        for n, (item, data) in enumerate(zip(items, reads, strict=True)):
            try:
                if isinstance(data, BaseException):
                    raise data
                reduced = reduce(data, self.spec, self.limits)
            except (ImgestError, StoreError) as exc:
                out[n] = _failed(item, exc)
                continue
            if reduced is None:  # catalogued larger than it decodes: nothing to store
                out[n] = Made(item.image_id)
                continue
            path = self.spec.path(item.image_id)
            record = intermediate_record_of(self.spec, path, reduced)
            writes.append((n, path, reduced.encoded, record))
        done = self.loop.run_until_complete(
            put_all_once(self.store, [(path, data) for _, path, data, _ in writes])
        )
        for (n, _, _, record), error in zip(writes, done, strict=True):
            if isinstance(error, ImgestError | StoreError):
                out[n] = _failed(items[n], error)
            elif isinstance(error, BaseException):
                raise error
            else:
                out[n] = Made(items[n].image_id, rendition=record)
        return [out[n] for n in range(len(items))]

    async def _read_all(self, paths: list[str]) -> list[bytes | BaseException]:
        return await asyncio.gather(*(self._read(p) for p in paths), return_exceptions=True)

    async def _read(self, path: str) -> bytes:
        reader = await self.store.get(path)
        return await reader.read()


def _failed(item: Item, exc: Exception) -> Made:
    if isinstance(exc, BlobNotFoundError):
        reason = f"original missing from storage: {exc.path}"
    elif isinstance(exc, ImgestError):
        reason = f"{exc.code}: {exc.detail}"
    else:
        reason = f"storage error: {exc}"
    return Made(item.image_id, error=reason, unavailable=timed_out(exc))


def _start(
    settings: Settings, spec: Intermediate, limits: ImageLimits
) -> Callable[[list[Item]], list[Made]]:
    return Maker(settings, spec, limits).make  # a worker process's, for its lifetime


def _engine(
    settings: Settings,
    spec: Intermediate,
    limits: ImageLimits,
    workers: int,
    batches: Iterator[list[Item]],
) -> Iterator[list[Made]]:
    """Each batch's outcomes as it finishes: in `workers` spawned processes (at most two
    batches queued per worker), or in this process for 0."""
    if workers == 0:
        maker = Maker(settings, spec, limits)
        try:
            for batch in batches:
                yield maker.make(batch)
        finally:
            maker.close()
        return
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    yield from run_spawned("backfill", workers, _start, (settings, spec, limits), batches)
