"""One upload: limits -> dedupe -> decode -> pipeline -> store -> score -> record."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import anyio.to_thread
import numpy as np
import numpy.typing as npt
from anyio import CapacityLimiter

from imgest.catalog.records import ImageRecord, PredictionRecord, RenditionRecord
from imgest.catalog.repo import Catalog
from imgest.errors import ClientError, ImageCorrupt, ImgestError, StorageUnavailable
from imgest.imaging.limits import ImageLimits, check
from imgest.imaging.pipeline import Pipeline, Rendition
from imgest.imaging.sniff import ImageInfo, probe
from imgest.scoring.batcher import MicroBatcher
from imgest.storage.base import BlobExistsError, BlobStore, StoreError
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


@dataclass(frozen=True)
class _Rendered:
    info: ImageInfo
    pixels: npt.NDArray[np.uint8]
    rendition: Rendition
    encoded: bytes


def render_original(
    data: bytes, pipeline: Pipeline, limits: ImageLimits
) -> tuple[ImageInfo, Rendition]:
    """Probe, check and render an original's bytes; any decoder failure is ImageCorrupt."""
    try:
        info = probe(data)
        check(info, limits)
        return info, pipeline.render(data, info)
    except ImgestError:
        raise
    except Exception as exc:  # a decoder tripping on hostile bytes is still the client's input
        log.warning("decoder failed on client input: %r", exc, exc_info=True)
        raise ImageCorrupt("The image could not be decoded.") from exc


class IngestService:
    """Turns uploaded bytes into a stored, scored, catalogued image."""

    def __init__(
        self,
        *,
        store: BlobStore,
        catalog: Catalog,
        batcher: MicroBatcher,
        pipeline: Pipeline,
        limits: ImageLimits,
        cpu: CapacityLimiter,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.batcher = batcher
        self.pipeline = pipeline
        self.limits = limits
        self.cpu = cpu

    async def ingest_many(
        self,
        uploads: Sequence[Upload],
        fields: dict[str, str | list[str]],
        tags: Sequence[str],
    ) -> list[IngestResult]:
        """Ingest every file of one request concurrently; results in upload order.

        Client errors become per-file `rejected` results; storage, catalog or model outages
        raise (the whole request is answered 503, and nothing is recorded for unfinished files).
        """
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.ingest(u, fields, tags)) for u in uploads]
        except BaseExceptionGroup as group_error:
            # One outage answers the whole request; the siblings were cancelled with it.
            raise group_error.exceptions[0] from None
        return [t.result() for t in tasks]

    async def ingest(
        self, upload: Upload, fields: dict[str, str | list[str]], tags: Sequence[str]
    ) -> IngestResult:
        """Store, score and record one file, or say why not."""
        if upload.error is not None:
            return self._rejected(upload, upload.error)
        existing = await anyio.to_thread.run_sync(self.catalog.get_image, upload.sha256)
        if existing is not None:
            return self._result("existing", upload, existing)
        try:
            rendered = await anyio.to_thread.run_sync(self._render, upload.data, limiter=self.cpu)
        except ClientError as exc:
            return self._rejected(upload, exc)

        original = original_path(upload.sha256)
        rendition = rendition_path(
            self.pipeline.name, self.pipeline.version, upload.sha256, rendered.rendition.extension
        )
        # Blobs first, catalog last: a crash in between leaves orphan blobs (swept by gc),
        # never a catalog row that points at a missing blob.
        await asyncio.gather(
            self._put(original, upload.data),
            self._put(rendition, rendered.encoded),
        )
        top = await self.batcher.score(rendered.pixels)
        now = datetime.now(UTC)
        model = self.batcher.model
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
            renditions=(
                RenditionRecord(
                    pipeline=self.pipeline.name,
                    pipeline_version=self.pipeline.version,
                    path=rendition,
                    width=rendered.rendition.width,
                    height=rendered.rendition.height,
                    content_type=rendered.rendition.content_type,
                    bytes=len(rendered.encoded),
                ),
            ),
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
        )
        created = await anyio.to_thread.run_sync(self.catalog.add_image, record)
        if not created:  # the same bytes won a race from another request
            stored = await anyio.to_thread.run_sync(self.catalog.get_image, upload.sha256)
            return self._result("existing", upload, stored or record)
        return self._result("created", upload, record)

    def _render(self, data: bytes) -> _Rendered:
        info, rendition = render_original(data, self.pipeline, self.limits)
        return _Rendered(
            info=info, pixels=rendition.pixels(), rendition=rendition, encoded=rendition.encode()
        )

    async def _put(self, path: str, data: bytes) -> None:
        try:
            await self.store.put(path, data, mode="create")
        except BlobExistsError:
            pass  # content-addressed: what is there is these bytes (an earlier, unfinished try)
        except StoreError as exc:
            raise StorageUnavailable() from exc

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
