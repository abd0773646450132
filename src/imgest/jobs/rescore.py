"""Rescore: give every stored image that lacks it the prediction of one model through one pipeline.

The driver pages through the catalog (images without the (model version, pipeline version)
prediction, keyset on id), hands batches to an engine (local process pool or Ray Data), and
records each finished batch in its own transaction with an idempotent insert: killing the job
loses at most the batches in flight, and running it again does only what is left.

The workers store the renditions the catalog lacks, the driver records them: the write path of
`imgest.storage.once` split in two. The driver takes a write lease on a batch's rendition paths
before it hands the batch over (W1), the workers put (W2), and the batch's transaction spends
the lease (W3). The driver no longer holds the bytes, so a rendition whose lease went stale
(a deleter may have removed its blob) is left out rather than stored again; its prediction is
recorded, and the rendition is made again on demand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Literal, Protocol

from imgest.catalog.records import (
    EmbeddingRecord,
    PendingImage,
    PredictionKey,
    PredictionRecord,
    RenditionRecord,
)
from imgest.catalog.repo import Catalog, ImageFilter
from imgest.config import Settings
from imgest.errors import JobError
from imgest.imaging.intermediate import Intermediate
from imgest.imaging.pipeline import Pipeline
from imgest.jobs.pool import LocalEngine
from imgest.jobs.progress import progress_bar
from imgest.jobs.raydata import RayEngine, require_ray
from imgest.jobs.resolve import resolve_model, resolve_pipeline
from imgest.jobs.runleases import RunLeases, stop_if_down
from imgest.jobs.scorer import BatchScorer, Outcome, ScorerSpec, WorkItem
from imgest.jobs.summary import summary_lines
from imgest.runtime import Runtime
from imgest.scoring.model import Model
from imgest.similarity.vectors import STORED
from imgest.storage.paths import rendition_path

EngineName = Literal["local", "ray"]
PAGE = 500  # images per catalog query


class Engine(Protocol):
    """Scores batches somewhere; yields each batch's outcomes when it is done."""

    name: str
    workers: int

    def run(self, batches: Iterator[list[WorkItem]]) -> Iterator[list[Outcome]]: ...


@dataclass
class RescoreSummary:
    """What one rescore run did."""

    key: PredictionKey
    engine: str
    workers: int
    matched: int  # images the filter selects
    pending: int  # of those, without the prediction (or embedding) when the run started
    embedded: bool = False  # the model has an embedding output: embeddings are recorded too
    scored: int = 0
    skipped: int = 0  # had the prediction already (at the start, or recorded meanwhile)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image id, reason)
    elapsed: float = 0.0
    # (seconds since the start when a batch came back, images done with it): start-up and
    # the steady rate are read off these
    marks: list[tuple[float, int]] = field(default_factory=list, repr=False)

    @property
    def startup(self) -> float:
        """Seconds until the first batch came back (workers starting, models loading)."""
        return self.marks[0][0] if self.marks else 0.0

    @property
    def first_batch(self) -> int:
        """Images in that first batch."""
        return self.marks[0][1] if self.marks else 0

    @property
    def rate(self) -> float:
        """Images scored per second of wall time."""
        return self.scored / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def steady_rate(self) -> float:
        """Images done per second from the batch that took the run past 10% of its images
        to the one that took it past 90%: the rate with the workers' start-up and the last
        batches' tail (some workers idle) left out; 0.0 where the run has too few batches."""
        total = self.marks[-1][1] if self.marks else 0
        start = next((m for m in self.marks if m[1] >= 0.1 * total), None)
        end = next((m for m in self.marks if m[1] >= 0.9 * total), None)
        if start is None or end is None or end[0] <= start[0]:
            return 0.0
        return (end[1] - start[1]) / (end[0] - start[0])

    def lines(self) -> list[str]:
        """A human summary, one fact per line."""
        key = self.key
        what = f"{key.model}@{key.model_version[:12]} through {key.pipeline}@{key.pipeline_version}"
        facts = [
            f"rescore {what} on {self.engine} ({self.workers} workers)",
            f"scored {self.scored}, skipped {self.skipped}, failed {len(self.failed)} "
            f"of {self.matched} matching images",
            f"elapsed {self.elapsed:.1f} s ({self.startup:.1f} s to the first batch), "
            f"{self.rate:.1f} images/s"
            + (f", {self.steady_rate:.1f}/s from 10% to 90%" if self.steady_rate else ""),
        ]
        return summary_lines(
            matched=self.matched, pending=self.pending, have=what, facts=facts, failed=self.failed
        )


def run(
    settings: Settings,
    *,
    model: str | None = None,
    pipeline: str = "default",
    where: ImageFilter | None = None,
    engine: EngineName = "local",
    workers: int = 1,
    batch_size: int = 16,
    device: str | None = None,
    decode: str = "cpu",
    ray_address: str | None = None,
    progress: bool = False,
    pin: bool = True,
    on_batch: Callable[[RescoreSummary], None] | None = None,
) -> RescoreSummary:
    """Score every image `where` selects that lacks the (model, pipeline) prediction.

    workers=0 with the local engine scores in this process (no pool), for debugging and
    for measuring the single-core bound. `pin` binds each local worker (and each Ray actor on
    this machine) to a core of its own where there are enough cores (see imgest.jobs.pool).
    `on_batch` is called with the summary so far after each batch is recorded. `decode`
    "cuda" decodes the originals' JPEGs on the GPU (nvImageCodec; untested on a GPU, see
    imgest.imaging.gpu); without nvImageCodec or a GPU it raises DeviceUnavailable at once.
    """
    where = where or ImageFilter()
    device = device or settings.device
    if decode not in ("cpu", "cuda"):
        raise JobError(f"unknown decode device {decode!r}: use cpu or cuda")
    if decode == "cuda" and engine == "local":
        from imgest.imaging.gpu import GpuJpegDecoder

        GpuJpegDecoder()  # no nvImageCodec or no GPU: DeviceUnavailable before any work
    if engine == "ray":
        require_ray()  # before any work, even when there is nothing to do
    if settings.storage_url.startswith("memory:"):
        raise JobError("rescore reads originals from storage; a memory:// store has none to read")
    runtime = Runtime(settings)
    catalog = runtime.open_catalog()
    try:
        spec = dataclasses.replace(
            scorer_spec(settings, catalog, model, pipeline, device), decode=decode
        )
        # Locally, load it here first: a bad device fails before any worker starts. A Ray
        # driver may have no GPU at all: its actors check their own device.
        loaded = spec.load_model() if engine == "local" else None
        key = PredictionKey(
            spec.model.name, spec.model_version, spec.pipeline.name, spec.pipeline.version
        )
        # A model with an embedding output also fills the embeddings images lack (images
        # scored by this version before it recorded them, or whose embedding was lost).
        embedded = (loaded or cpu_model(spec)).embedding_dim is not None
        summary = RescoreSummary(
            key=key,
            engine=engine,
            workers=workers,
            matched=catalog.count_images(where),
            pending=catalog.count_pending(key, where, embedded=embedded),
            embedded=embedded,
        )
        if summary.pending == 0:
            summary.skipped = summary.matched
            return summary
        runner = _engine(runtime, engine, spec, loaded, workers, batch_size, ray_address, pin)
        leases = RunLeases(catalog, settings.storage_timeout_s)
        try:
            batches = _batches(
                catalog,
                key,
                where,
                batch_size,
                summary.embedded,
                leases,
                spec.pipeline,
                runtime.intermediate,
            )
            _drive(catalog, runner, key, batches, summary, progress, on_batch, leases)
        finally:
            leases.close()
        return summary
    finally:
        catalog.close()


def cpu_model(spec: ScorerSpec) -> Model:
    """The spec's model on the CPU (a Ray driver's look at the graph: it may have no GPU)."""
    return Model.from_bytes(spec.model_bytes, spec.model, threads=1, device="cpu")


def scorer_spec(
    settings: Settings, catalog: Catalog, model: str | None, pipeline: str, device: str
) -> ScorerSpec:
    """What every worker needs: the model's weights and spec, the pipeline, the settings."""
    runtime = Runtime(settings)

    async def resolve() -> ScorerSpec:
        store = runtime.open_store()
        try:
            registry = runtime.registry(catalog, store)
            entry = await resolve_model(registry, settings, model)
            weights = await registry.read_bytes(entry)
        finally:
            await store.close()
        return ScorerSpec(
            settings=settings,
            model=entry.spec,
            model_bytes=weights,
            model_version=entry.version,
            pipeline=resolve_pipeline(settings, pipeline, entry),
            top_k=settings.top_k,
            device=device,
            limits=runtime.limits,
        )

    return asyncio.run(resolve())


def _engine(
    runtime: Runtime,
    name: EngineName,
    spec: ScorerSpec,
    loaded: Model | None,
    workers: int,
    batch_size: int,
    ray_address: str | None,
    pin: bool,
) -> Engine:
    if name == "ray":
        return RayEngine(spec, workers=workers, batch_size=batch_size, address=ray_address, pin=pin)
    if workers == 0 and loaded is not None:  # in this process, with the model loaded
        store = runtime.open_store()
        inline = BatchScorer(spec, store=store, model=loaded, owns_store=True)
        return LocalEngine(spec, workers=0, inline=inline)
    return LocalEngine(spec, workers=workers, pin=pin)


def _drive(
    catalog: Catalog,
    engine: Engine,
    key: PredictionKey,
    batches: Iterator[list[WorkItem]],
    summary: RescoreSummary,
    progress: bool,
    on_batch: Callable[[RescoreSummary], None] | None,
    leases: RunLeases,
) -> None:
    started = time.monotonic()
    summary.skipped = summary.matched - summary.pending
    done = 0
    with progress_bar("rescore", summary.pending, enabled=progress) as advance:
        for outcomes in engine.run(batches):
            came_back = time.monotonic() - started
            _record(catalog, key, outcomes, summary, leases)
            done += len(outcomes)
            summary.marks.append((came_back, done))
            advance(len(outcomes))
            if on_batch is not None:
                on_batch(summary)
    summary.elapsed = time.monotonic() - started


def _batches(
    catalog: Catalog,
    key: PredictionKey,
    where: ImageFilter,
    batch_size: int,
    embedded: bool,
    leases: RunLeases | None,
    pipeline: Pipeline,
    intermediate: Intermediate | None,
) -> Iterator[list[WorkItem]]:
    """The pending images in batches, each to be rendered from its intermediate where that
    is large enough for `pipeline` (see Intermediate.source_for), else from its original."""
    version = intermediate.version if intermediate is not None else None
    for page in catalog.image_pages(
        key.pipeline,
        key.pipeline_version,
        where=where,
        lacking=key,
        embedded=embedded,
        limit=PAGE,
        intermediate=version,
    ):
        items = iter(page)
        while chunk := list(islice(items, batch_size)):
            batch = [_work_item(p, pipeline, intermediate) for p in chunk]
            if leases is not None:
                leases.take([_rendition_path(key, i.image_id) for i in batch if i.store_rendition])
            yield batch


def _rendition_path(key: PredictionKey, image_id: str) -> str:
    # Where the workers store it (imgest.jobs.scorer): renditions are JPEGs.
    return rendition_path(key.pipeline, key.pipeline_version, image_id, "jpg")


def _work_item(p: PendingImage, pipeline: Pipeline, intermediate: Intermediate | None) -> WorkItem:
    stored = p.intermediate
    if intermediate is not None and stored is not None:
        have = (stored.width, stored.height)
        if intermediate.source_for(pipeline, p.size, have) == "intermediate":
            return WorkItem(p.id, p.original_path, p.rendition_path is None, stored.path, p.size)
    return WorkItem(p.id, p.original_path, p.rendition_path is None)


def _record(
    catalog: Catalog,
    key: PredictionKey,
    outcomes: list[Outcome],
    summary: RescoreSummary,
    leases: RunLeases | None = None,
) -> None:
    now = datetime.now(UTC)
    results: list[tuple[str, PredictionRecord, RenditionRecord | None]] = []
    embeddings: list[tuple[str, EmbeddingRecord]] = []
    for o in outcomes:
        if o.error is not None:
            summary.failed.append((o.image_id, o.error))
            continue
        prediction = PredictionRecord(
            model=key.model,
            model_version=key.model_version,
            pipeline=key.pipeline,
            pipeline_version=key.pipeline_version,
            top=o.top,
            created_at=now,
        )
        results.append((o.image_id, prediction, o.rendition))
        if o.embedding is not None:
            record = EmbeddingRecord(
                model=key.model,
                model_version=key.model_version,
                pipeline=key.pipeline,
                pipeline_version=key.pipeline_version,
                dim=len(o.embedding) // STORED.itemsize,
                vector=o.embedding,
                created_at=now,
            )
            embeddings.append((o.image_id, record))
    lease = None
    if leases is not None:
        lease = leases.of([r.path for _, _, r in results if r is not None])
    new = catalog.add_results(results, lease, embeddings)
    if leases is not None and lease is not None:
        leases.spent(lease, "rendition")
    summary.scored += new
    summary.skipped += len(results) - new
    stop_if_down(next((o.error for o in outcomes if o.unavailable), None))
