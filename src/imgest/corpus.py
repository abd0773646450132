"""Reading the stored corpus: one image, its blobs, filtered pages; deleting an image."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import anyio.from_thread
import anyio.to_thread

from imgest.catalog.records import ImageRecord, RenditionRecord
from imgest.catalog.repo import Catalog, ImageFilter, Page
from imgest.errors import ImageNotFound, PipelineNotFound, StorageUnavailable
from imgest.storage.base import (
    BlobNotFoundError,
    BlobReader,
    BlobStore,
    StoreError,
    signed_url,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenBlob:
    """A blob ready to stream, with what an HTTP response needs to describe it."""

    reader: BlobReader
    content_type: str
    etag: str


class Corpus:
    """Read and delete access to stored images (catalog rows plus their blobs)."""

    def __init__(
        self,
        *,
        store: BlobStore,
        catalog: Catalog,
        current_pipelines: dict[str, str],
        signed_url_ttl: timedelta = timedelta(minutes=5),
    ):
        self.store = store
        self.catalog = catalog
        # pipeline name -> version rendered at ingest; served first when several exist
        self.current_pipelines = current_pipelines
        self.signed_url_ttl = signed_url_ttl

    async def get(self, image_id: str) -> ImageRecord:
        """The image, or ImageNotFound."""
        record = await anyio.to_thread.run_sync(self.catalog.get_image, image_id)
        if record is None:
            raise ImageNotFound(f"No image with id {image_id} is stored.")
        return record

    async def list(self, *, limit: int, cursor: str | None, where: ImageFilter) -> Page:
        """One page of images, newest first."""
        return await anyio.to_thread.run_sync(
            lambda: self.catalog.list_images(limit=limit, cursor=cursor, where=where)
        )

    async def open_original(self, image_id: str) -> OpenBlob:
        """The original's exact bytes."""
        record = await self.get(image_id)
        reader = await self._open(record.original_path, image_id)
        return OpenBlob(reader, record.content_type, f'"{record.id}"')

    def rendition_of(self, record: ImageRecord, pipeline: str) -> RenditionRecord:
        """The stored rendition of `record` for `pipeline` (its current version preferred)."""
        candidates = [r for r in record.renditions if r.pipeline == pipeline]
        if not candidates:
            raise PipelineNotFound(f"Image {record.id} has no rendition for pipeline {pipeline!r}.")
        current = self.current_pipelines.get(pipeline)
        for r in candidates:
            if r.pipeline_version == current:
                return r
        return candidates[-1]

    async def open_rendition(self, image_id: str, pipeline: str) -> OpenBlob:
        """A stored rendition's bytes."""
        record = await self.get(image_id)
        rendition = self.rendition_of(record, pipeline)
        reader = await self._open(rendition.path, image_id)
        return OpenBlob(
            reader, rendition.content_type, f'"{record.id}-{rendition.pipeline_version}"'
        )

    async def original_url(self, image_id: str) -> str | None:
        """A short-lived signed URL of the original, or None when the store cannot sign."""
        record = await self.get(image_id)
        return await self._sign(record.original_path, record.content_type)

    async def rendition_url(self, image_id: str, pipeline: str) -> str | None:
        """A short-lived signed URL of a rendition, or None when the store cannot sign."""
        rendition = self.rendition_of(await self.get(image_id), pipeline)
        return await self._sign(rendition.path, rendition.content_type)

    async def _sign(self, path: str, content_type: str) -> str | None:
        try:
            return await signed_url(
                self.store, path, self.signed_url_ttl, content_type=content_type
            )
        except StoreError as exc:
            raise StorageUnavailable() from exc

    async def delete(self, image_id: str) -> ImageRecord:
        """Remove the catalog rows and then the blobs, under the image's catalog lock.

        A blob that fails to go is left for gc. See `Catalog` for why the lock makes a
        delete racing an upload of the same bytes safe.
        """
        record = await anyio.to_thread.run_sync(
            self.catalog.delete_image, image_id, self._remove_blobs
        )
        if record is None:
            raise ImageNotFound(f"No image with id {image_id} is stored.")
        return record

    def _remove_blobs(self, record: ImageRecord) -> None:
        remove_blobs(self.store, record.blob_paths())

    async def _open(self, path: str, image_id: str) -> BlobReader:
        try:
            return await self.store.get(path)
        except BlobNotFoundError:
            # The catalog has the row but storage lost the blob: fsck reports this.
            log.error("catalog row %s points at missing blob %s", image_id, path)
            raise StorageUnavailable(f"The stored bytes of image {image_id} are missing.") from None
        except StoreError as exc:
            raise StorageUnavailable() from exc


def remove_blobs(store: BlobStore, paths: list[str]) -> None:
    """From a worker thread: delete `paths`, logging (not raising) a failure; gc retries later."""
    for path in paths:
        try:
            anyio.from_thread.run(store.delete, path)
        except StoreError:
            log.warning("could not delete blob %s; gc will remove it", path, exc_info=True)
