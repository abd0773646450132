"""One upload: limits -> dedupe -> decode -> pipeline (and intermediate) -> score -> store ->
record."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import anyio.to_thread
import numpy as np
import numpy.typing as npt
from anyio import CapacityLimiter

from imgest.catalog.records import Additions, Applied, ImageRecord, PredictionRecord
from imgest.catalog.repo import Catalog
from imgest.errors import ClientError, ModelPipelineMismatch, NearDuplicate, NoEmbedding
from imgest.imaging.pipeline import Pipeline
from imgest.metrics import Metrics
from imgest.rendering import (
    Rendered,
    Renderer,
    intermediate_record_of,
    render,
    rendition_record_of,
)
from imgest.scoring.batcher import MicroBatcher
from imgest.scoring.model import Model
from imgest.scoring.scorers import Scorers
from imgest.similarity.live import Match, NearDuplicatePolicy, SimilarImages
from imgest.similarity.vectors import embedding_record
from imgest.storage.base import BlobStore
from imgest.storage.once import store_and_record
from imgest.storage.paths import original_path, rendition_path

log = logging.getLogger(__name__)

Status = Literal["created", "existing", "rejected"]
CATALOG_WRITERS = 8  # of anyio's 40 default worker threads


@dataclass(frozen=True)
class Upload:
    """One file as received: its bytes and what the client said about it."""

    data: bytes
    sha256: str
    filename: str
    content_type: str | None
    size: int
    error: ClientError | None = None  # refused while streaming (e.g. over the size limit)


@dataclass(frozen=True)
class IngestResult:
    """What became of one uploaded file."""

    status: Status
    filename: str
    content_type: str | None
    size: int
    record: ImageRecord | None = None
    error: ClientError | None = None
    applied: Applied | None = None  # what the upload's tags, label and fields did
    near_duplicates: tuple[Match, ...] = ()  # stored images this file is very similar to


@dataclass
class IngestCounters:
    """Work done since start-up: what a test or a dashboard counts to catch double work."""

    files: int = 0  # files that reached ingest (not replays, not refused requests)
    renders: int = 0  # decode + pipeline + encode runs
    created: int = 0  # images recorded by this process


@dataclass(kw_only=True, eq=False)  # a service: equal to itself only, hashable
class IngestService:
    """Turns uploaded bytes into a stored, scored, catalogued image."""

    store: BlobStore
    catalog: Catalog
    scorers: Scorers
    pipeline: Pipeline
    renderer: Renderer  # shared with on-demand renditions (Corpus)
    metrics: Metrics = field(default_factory=Metrics)
    similar: SimilarImages | None = None  # None: no near-duplicate search, embeddings recorded
    near: NearDuplicatePolicy = field(default_factory=NearDuplicatePolicy)
    counters: IngestCounters = field(default_factory=IngestCounters, init=False)
    # Catalog writes wait on the image's lock (on SQLite, the database's): writers
    # waiting on it must not fill the whole thread pool.
    catalog_writers: CapacityLimiter = field(
        default_factory=lambda: CapacityLimiter(CATALOG_WRITERS), init=False
    )

    async def scorer(self, model: str | None = None) -> MicroBatcher:
        """The batcher of `model` (NAME[@VERSION]; None: the active model), checked against
        the ingest pipeline's model-input size."""
        batcher = await self.scorers.get(model)
        if batcher.model.input.size != self.pipeline.input_size:
            w, h = batcher.model.input.size
            pw, ph = self.pipeline.input_size
            raise ModelPipelineMismatch(
                f"Model {batcher.model.name} takes {w}x{h} inputs; pipeline "
                f"{self.pipeline.name} makes {pw}x{ph}."
            )
        return batcher

    async def ingest_many(
        self,
        uploads: Sequence[Upload],
        fields: dict[str, str | list[str]],
        tags: Sequence[str],
        *,
        scorer: MicroBatcher | None = None,
        label: str | None = None,
    ) -> list[IngestResult]:
        """Ingest every file of one request concurrently; results in upload order.

        `scorer` defaults to the active model's; `label` is the ground truth recorded with
        each new image. Client errors become per-file `rejected` results; storage, catalog
        or model outages raise (the whole request is answered 503, and nothing is recorded
        for unfinished files).
        """
        scorer = scorer or await self.scorer()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self.ingest(u, fields, tags, scorer=scorer, label=label))
                    for u in uploads
                ]
        except BaseExceptionGroup as group_error:
            # One outage answers the whole request; the siblings were cancelled with it.
            raise group_error.exceptions[0] from None
        return [t.result() for t in tasks]

    async def ingest(
        self,
        upload: Upload,
        fields: dict[str, str | list[str]],
        tags: Sequence[str],
        *,
        scorer: MicroBatcher,
        label: str | None = None,
    ) -> IngestResult:
        """Store, score and record one file, or say why not."""
        self.counters.files += 1
        if upload.error is not None:
            return self._rejected(upload, upload.error)
        add = Additions(tags=tuple(tags), label=label, fields=fields)
        existing = await anyio.to_thread.run_sync(self.catalog.get_image, upload.sha256)
        if existing is not None:
            merged = await self._add_metadata(existing, add)
            if merged is not None:
                return self._result("existing", upload, *merged)
            # deleted since we looked: store it anew below
        self.counters.renders += 1
        try:
            rendered = await self.renderer.run(self._render, upload.data)
        except ClientError as exc:
            return self._rejected(upload, exc)

        original = original_path(upload.sha256)
        rendition = rendition_path(
            self.pipeline.name, self.pipeline.version, upload.sha256, rendered.rendition.extension
        )
        blobs = {original: upload.data, rendition: rendered.encoded}
        renditions = [rendition_record_of(self.pipeline, rendition, rendered)]
        spec = self.renderer.intermediate  # stored with each new image larger than it
        if rendered.intermediate is not None and spec is not None:
            reduced = rendered.intermediate
            path = spec.path(upload.sha256)
            blobs[path] = reduced.encoded
            renditions.append(intermediate_record_of(spec, path, reduced))
        # Score first: a refused score (queue full, 503) leaves nothing behind. Then blobs,
        # catalog last: a crash in between leaves orphan blobs (swept by gc), never a catalog
        # row that points at a missing blob (see imgest.storage.once).
        with self.metrics.score_seconds.time():
            scored = await scorer.score_embedded(rendered.inputs, rendered.rendition.aggregate)
        top, embedding = scored.top, scored.embedding
        near = await self._near_duplicates(scorer.model, embedding, upload.sha256)
        if near and self.near.mode == "reject":
            best = near[0]
            error = NearDuplicate(
                f"The file is a near-duplicate of stored image {best.id} (similarity "
                f"{best.score:.3f}, threshold {self.near.threshold}); it was not stored."
            )
            return self._rejected(upload, error, near)
        now = datetime.now(UTC)
        model = scorer.model
        record = ImageRecord(
            id=upload.sha256,
            format=rendered.info.format,
            content_type=rendered.info.mime,
            width=rendered.info.width,
            height=rendered.info.height,
            frames=rendered.info.frames,
            bytes=len(upload.data),
            filename=upload.filename,
            original_path=original,
            created_at=now,
            fields=dict(fields),
            tags=tuple(tags),
            renditions=tuple(renditions),
            predictions=(
                PredictionRecord(
                    model=model.name,
                    model_version=model.version,
                    pipeline=self.pipeline.name,
                    pipeline_version=self.pipeline.version,
                    top=top,
                    created_at=now,
                ),
            ),
            label=label,
        )
        embeddings = (
            ()
            if embedding is None
            else (
                embedding_record(
                    embedding,
                    model=model.name,
                    model_version=model.version,
                    pipeline=self.pipeline.name,
                    pipeline_version=self.pipeline.version,
                    created_at=now,
                ),
            )
        )
        with self.metrics.store_seconds.time():  # the lease, the puts and the record
            created = await store_and_record(
                self.store,
                self.catalog,
                blobs,
                lambda lease: self.catalog.add_image(record, lease, embeddings=embeddings),
                limiter=self.catalog_writers,
            )
        if not created:  # the same bytes won a race from another request
            stored = await anyio.to_thread.run_sync(self.catalog.get_image, upload.sha256)
            merged = await self._add_metadata(stored, add) if stored is not None else None
            if merged is None:
                return self._result("existing", upload, stored or record, Applied())
            return self._result("existing", upload, *merged)
        self.counters.created += 1
        if embedding is not None and self.similar is not None:
            self.similar.added(model, record.id, embedding)
        return self._result("created", upload, record, add.created(), near)

    async def _near_duplicates(
        self, model: Model, embedding: npt.NDArray[np.float32] | None, image_id: str
    ) -> tuple[Match, ...]:
        """Stored images at least the policy's threshold similar to this embedding."""
        if embedding is None or self.similar is None or self.near.mode == "off":
            return ()
        found = await self.similar.search(
            model,
            embedding,
            self.near.limit,
            threshold=self.near.threshold,
            exclude=(image_id,),
        )
        return tuple(found)

    async def embed(self, upload: Upload, scorer: MicroBatcher) -> npt.NDArray[np.float32]:
        """A query image's embedding, through the same limits, decode, pipeline and batcher as
        an upload (nothing stored); the upload's or the render's ClientError, or NoEmbedding
        when the model has no embedding output."""
        if upload.error is not None:
            raise upload.error
        if scorer.model.embedding_dim is None:
            raise NoEmbedding(
                f"Model {scorer.model.name} has no embedding output: it cannot compare images."
            )
        rendered = await self.renderer.run(self._render, upload.data)
        scored = await scorer.score_embedded(rendered.inputs, rendered.rendition.aggregate)
        assert scored.embedding is not None
        return scored.embedding

    async def _add_metadata(
        self, existing: ImageRecord, add: Additions
    ) -> tuple[ImageRecord, Applied] | None:
        """An upload's metadata merged into the stored image (None: it is gone). The write
        (PATCH's path, under the image's lock) only happens when it would change something."""
        applied = add.applied_to(existing)
        if not applied.changes:
            return existing, applied
        return await anyio.to_thread.run_sync(
            self.catalog.add_metadata, existing.id, add, limiter=self.catalog_writers
        )

    def _render(self, data: bytes) -> Rendered:
        """Decode + pipeline + encode (in a worker thread), timed for /metrics."""
        started = time.perf_counter()
        try:
            r = self.renderer
            return render(data, self.pipeline, r.limits, intermediate=r.intermediate)
        finally:
            self.metrics.render_seconds.observe(time.perf_counter() - started)

    @staticmethod
    def _result(
        status: Status,
        upload: Upload,
        record: ImageRecord,
        applied: Applied,
        near: tuple[Match, ...] = (),
    ) -> IngestResult:
        return IngestResult(
            status=status,
            filename=upload.filename,
            content_type=upload.content_type,
            size=upload.size,
            record=record,
            applied=applied,
            near_duplicates=near,
        )

    @staticmethod
    def _rejected(upload: Upload, error: ClientError, near: tuple[Match, ...] = ()) -> IngestResult:
        return IngestResult(
            status="rejected",
            filename=upload.filename,
            content_type=upload.content_type,
            size=upload.size,
            error=error,
            near_duplicates=near,
        )
