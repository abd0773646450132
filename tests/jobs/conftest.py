"""A local blob store and a catalog (SQLite and PostgreSQL), and images stored in both."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imgest.catalog.records import ImageRecord
from imgest.catalog.repo import Catalog
from imgest.storage.base import BlobStore
from imgest.storage.local import LocalStore
from imgest.storage.paths import original_path, rendition_path
from tests.catalog.conftest import catalog, catalog_url, make_record

__all__ = ["catalog", "catalog_url", "make_record"]

StoreImage = Callable[..., Awaitable[ImageRecord]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    local = LocalStore(tmp_path / "blobs")
    yield local
    await local.close()


@pytest.fixture
def store_image(
    store: BlobStore, catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> StoreImage:
    """store_image(n) -> an image of random bytes whose blobs and row are both stored."""

    async def add(n: int, *, size: int = 3000) -> ImageRecord:
        data = os.urandom(size)
        image_id = hashlib.sha256(data).hexdigest()
        template = make_record(n)
        rendition_bytes = os.urandom(500)
        rendition = replace(
            template.renditions[0],
            path=rendition_path("default", "v1", image_id, "jpg"),
            bytes=len(rendition_bytes),
        )
        record = replace(
            template,
            id=image_id,
            original_path=original_path(image_id),
            bytes=size,
            created_at=datetime.now(UTC),
            renditions=(rendition,),
        )
        await store.put(record.original_path, data)
        await store.put(rendition.path, rendition_bytes)
        assert catalog.add_image(record)
        return record

    return add
