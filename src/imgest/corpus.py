"""Reading the stored corpus: one image, its blobs (renditions made on demand), filtered
pages; labelling and deleting an image."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import anyio.from_thread
import anyio.to_thread
from sqlalchemy.exc import IntegrityError

from imgest.catalog.records import ImageRecord, RenditionRecord
from imgest.catalog.repo import UNSET, Catalog, ImageFilter, Page, Sort, Unset
from imgest.errors import (
    ImageNotFound,
    InsufficientScope,
    PipelineNotFound,
    StorageUnavailable,
)
from imgest.imaging.intermediate import NAME as INTERMEDIATE
from imgest.imaging.intermediate import Source
from imgest.imaging.pipeline import Pipeline
from imgest.rendering import Renderer, render, rendition_record_of
from imgest.storage.base import (
    BlobNotFoundError,
    BlobReader,
    BlobStore,
    signed_url,
)
from imgest.storage.once import delete_blobs, deleting, storage_errors, store_and_record
from imgest.storage.paths import rendition_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenBlob:
    """A blob ready to stream, with what an HTTP response needs to describe it."""

    reader: BlobReader
    content_type: str
    etag: str


class Corpus:
    """Read, update and delete access to stored images (catalog rows plus their blobs)."""

    def __init__(
        self,
        *,
        store: BlobStore,
        catalog: Catalog,
        pipelines: Mapping[str, Pipeline],
        renderer: Renderer,
        signed_url_ttl: timedelta = timedelta(minutes=5),
    ):
        self.store = store
        self.catalog = catalog
        self.pipelines = pipelines  # the configured ones: renditions are made on demand
        self.renderer = renderer  # shared with ingest; renditions start from its intermediates
        self.signed_url_ttl = signed_url_ttl

    async def get(self, image_id: str) -> ImageRecord:
        """The image, or ImageNotFound."""
        record = await anyio.to_thread.run_sync(self.catalog.get_image, image_id)
        if record is None:
            raise ImageNotFound(f"No image with id {image_id} is stored.")
        return record

    async def list(
        self, *, limit: int, cursor: str | None, where: ImageFilter, sort: Sort = "newest"
    ) -> Page:
        """One page of images in `sort` order (newest first by default)."""
        return await anyio.to_thread.run_sync(
            lambda: self.catalog.list_images(limit=limit, cursor=cursor, where=where, sort=sort)
        )

    async def open_original(self, image_id: str) -> OpenBlob:
        """The original's exact bytes."""
        record = await self.get(image_id)
        reader = await self._open(record.original_path, image_id)
        return OpenBlob(reader, record.content_type, f'"{record.id}"')

    async def rendition_of(
        self, record: ImageRecord, name: str, *, may_render: bool = True
    ) -> RenditionRecord:
        """The rendition of `record` by pipeline `name` at its configured version, rendered
        (from the image's intermediate where it is large enough, else from the original) and
        stored now if it is missing. A pipeline no longer configured
        still serves what it stored. Without `may_render` (a caller that may only read) a
        missing rendition is InsufficientScope: rendering writes to storage."""
        stored = [r for r in record.renditions if r.pipeline == name]
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            if stored:
                return stored[-1]
            raise PipelineNotFound(
                f"No pipeline named {name!r}; configured: {', '.join(sorted(self.pipelines))}."
            )
        for r in stored:
            if r.pipeline_version == pipeline.version:
                return r
        if not may_render:
            raise InsufficientScope(
                f"The {name} rendition of this image is not stored yet; rendering it stores a "
                "new blob and needs the upload or admin scope."
            )
        return await self._render(record, pipeline)

    async def _render(self, record: ImageRecord, pipeline: Pipeline) -> RenditionRecord:
        source, source_path = self.source_of(record, pipeline)
        data = await (await self._open(source_path, record.id)).read()
        limits = self.renderer.limits
        rendered = await self.renderer.run(
            lambda: render(
                data, pipeline, limits, source=source, original=(record.width, record.height)
            )
        )
        path = rendition_path(pipeline.name, pipeline.version, record.id, "jpg")
        rendition = rendition_record_of(pipeline, path, rendered, source)
        try:
            await store_and_record(
                self.store,
                self.catalog,
                {path: rendered.encoded},
                lambda lease: self.catalog.add_rendition(record.id, rendition, lease),
            )
        except IntegrityError:  # the image was deleted meanwhile; the blob is gc's
            raise ImageNotFound(f"No image with id {record.id} is stored.") from None
        log.info("rendered %s for %s on demand from its %s", pipeline.name, record.id, source)
        return rendition

    def source_of(self, record: ImageRecord, pipeline: Pipeline) -> tuple[Source, str]:
        """What `pipeline` renders `record` from (see Intermediate.source_for), and its path."""
        spec = self.renderer.intermediate
        stored = record.rendition(INTERMEDIATE, spec.version) if spec is not None else None
        if spec is None or stored is None:
            return "original", record.original_path
        have = (stored.width, stored.height)
        if spec.source_for(pipeline, (record.width, record.height), have) == "original":
            return "original", record.original_path
        return "intermediate", stored.path

    async def open_rendition(
        self, image_id: str, pipeline: str, *, may_render: bool = True
    ) -> OpenBlob:
        """A rendition's bytes (made and stored first if the pipeline has none yet)."""
        record = await self.get(image_id)
        rendition = await self.rendition_of(record, pipeline, may_render=may_render)
        reader = await self._open(rendition.path, image_id)
        return OpenBlob(
            reader, rendition.content_type, f'"{record.id}-{rendition.pipeline_version}"'
        )

    async def update(
        self,
        image_id: str,
        *,
        label: str | Unset | None = UNSET,
        tags: Sequence[str] | Unset = UNSET,
        description: str | Unset | None = UNSET,
    ) -> ImageRecord:
        """Set the ground-truth label, tags or description; the updated image."""
        record = await anyio.to_thread.run_sync(
            lambda: self.catalog.update_image(
                image_id, label=label, tags=tags, description=description
            )
        )
        if record is None:
            raise ImageNotFound(f"No image with id {image_id} is stored.")
        return record

    async def set_labels(self, image_ids: Sequence[str], label: str | None) -> Sequence[str]:
        """Set (None: clear) the ground truth of many images in one transaction; the ids of
        those that exist."""
        return await anyio.to_thread.run_sync(self.catalog.set_labels, image_ids, label)

    async def original_url(self, image_id: str) -> str | None:
        """A short-lived signed URL of the original, or None when the store cannot sign."""
        record = await self.get(image_id)
        return await self._sign(record.original_path, record.content_type)

    async def rendition_url(
        self, image_id: str, pipeline: str, *, may_render: bool = True
    ) -> str | None:
        """A short-lived signed URL of a rendition, or None when the store cannot sign."""
        record = await self.get(image_id)
        rendition = await self.rendition_of(record, pipeline, may_render=may_render)
        return await self._sign(rendition.path, rendition.content_type)

    async def _sign(self, path: str, content_type: str) -> str | None:
        with storage_errors():
            return await signed_url(
                self.store, path, self.signed_url_ttl, content_type=content_type
            )

    async def delete(self, image_id: str) -> ImageRecord:
        """Remove the catalog rows (taking a delete lease on the blobs), then the blobs.

        A blob that fails to go is left for gc; one an upload of the same bytes is storing
        right now (its write lease) is left to that upload (see imgest.storage.once).
        """
        remove = self.catalog.delete_image
        async with deleting(self.catalog, lambda lease: remove(image_id, lease)) as done:
            record, deletion = done
            await delete_blobs(self.store, deletion)
        if record is None:
            raise ImageNotFound(f"No image with id {image_id} is stored.")
        return record

    async def _open(self, path: str, image_id: str) -> BlobReader:
        try:
            with storage_errors():
                return await self.store.get(path)
        except StorageUnavailable as exc:
            if not isinstance(exc.__cause__, BlobNotFoundError):
                raise
            # The catalog has the row but storage lost the blob: fsck reports this.
            log.error("catalog row %s points at missing blob %s", image_id, path)
            raise StorageUnavailable(f"The stored bytes of image {image_id} are missing.") from None
