"""One upload: limits -> dedupe -> decode -> pipeline -> store -> score -> record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import anyio.to_thread
from anyio import CapacityLimiter

from imgest.catalog.records import ImageRecord, PredictionRecord
from imgest.catalog.repo import Catalog
from imgest.errors import ClientError, ModelPipelineMismatch
from imgest.imaging.limits import ImageLimits
from imgest.imaging.pipeline import Pipeline
from imgest.rendering import render, rendition_record_of
from imgest.scoring.batcher import MicroBatcher
from imgest.scoring.scorers import Scorers
from imgest.storage.base import BlobStore
from imgest.storage.once import put_once
from imgest.storage.paths import original_path, rendition_path

log = logging.getLogger(__name__)

Status = Literal["created", "existing", "rejected"]


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


class IngestService:
    """Turns uploaded bytes into a stored, scored, catalogued image."""

    def __init__(
        self,
        *,
        store: BlobStore,
        catalog: Catalog,
        scorers: Scorers,
        pipeline: Pipeline,
        limits: ImageLimits,
        cpu: CapacityLimiter,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.scorers = scorers
        self.pipeline = pipeline
        self.limits = limits
        self.cpu = cpu

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
        if upload.error is not None:
            return self._rejected(upload, upload.error)
        existing = await anyio.to_thread.run_sync(self.catalog.get_image, upload.sha256)
        if existing is not None:
            return self._result("existing", upload, existing)
        try:
            rendered = await anyio.to_thread.run_sync(
                render, upload.data, self.pipeline, self.limits, limiter=self.cpu
            )
        except ClientError as exc:
            return self._rejected(upload, exc)

        original = original_path(upload.sha256)
        rendition = rendition_path(
            self.pipeline.name, self.pipeline.version, upload.sha256, rendered.rendition.extension
        )
        # Blobs first, catalog last: a crash in between leaves orphan blobs (swept by gc),
        # never a catalog row that points at a missing blob.
        await asyncio.gather(
            put_once(self.store, original, upload.data),
            put_once(self.store, rendition, rendered.encoded),
        )
        top = await scorer.score_inputs(rendered.inputs, rendered.rendition.aggregate)
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
            renditions=(rendition_record_of(self.pipeline, rendition, rendered),),
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
        created = await anyio.to_thread.run_sync(self.catalog.add_image, record)
        if not created:  # the same bytes won a race from another request
            stored = await anyio.to_thread.run_sync(self.catalog.get_image, upload.sha256)
            return self._result("existing", upload, stored or record)
        return self._result("created", upload, record)

    @staticmethod
    def _result(status: Status, upload: Upload, record: ImageRecord) -> IngestResult:
        return IngestResult(
            status=status,
            filename=upload.filename,
            content_type=upload.content_type,
            size=upload.size,
            record=record,
        )

    @staticmethod
    def _rejected(upload: Upload, error: ClientError) -> IngestResult:
        return IngestResult(
            status="rejected",
            filename=upload.filename,
            content_type=upload.content_type,
            size=upload.size,
            error=error,
        )
