"""gc and fsck on the Azure and S3 backends (Azurite, radosgw): listing, last-modified times,
streamed reads and deletes as those services give them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imgest.catalog.repo import Catalog
from imgest.jobs import fsck, gc
from imgest.storage.base import BlobStore
from imgest.storage.registry import open_store
from tests.jobs.conftest import StoreImage
from tests.jobs.test_gc import orphan

pytestmark = pytest.mark.anyio


@pytest.fixture
def catalog_url(tmp_path: Path) -> str:
    """SQLite only here: the catalog side runs on PostgreSQL in the other job tests."""
    return f"sqlite:///{tmp_path / 'catalog.db'}"


@pytest.fixture(params=[pytest.param("azure", marks=pytest.mark.azure),
                        pytest.param("s3", marks=pytest.mark.s3)])  # fmt: skip
async def store(request: pytest.FixtureRequest) -> AsyncIterator[BlobStore]:
    """Overrides the local store of conftest.py: a fresh container or bucket."""
    if request.param == "azure":
        azurite = request.getfixturevalue("azurite")
        url = azurite.url_for(azurite.new_container())
    else:
        rgw = request.getfixturevalue("radosgw")
        url = rgw.url_for(rgw.new_bucket())
    remote = open_store(url)
    yield remote
    await remote.close()


async def test_gc_and_fsck(store: BlobStore, catalog: Catalog, store_image: StoreImage) -> None:
    kept = await store_image(1)
    orphans = await orphan(store, 1000)

    assert (await fsck.run(store, catalog, deep=True)).ok
    young = await gc.run(store, catalog)
    assert (young.scanned, young.referenced, young.young, young.deleted) == (4, 2, 2, 0)
    swept = await gc.run(store, catalog, now=datetime.now(UTC) + timedelta(hours=2))
    assert (swept.deleted, swept.deleted_bytes) == (2, 2000)
    remaining = sorted([m.path async for m in store.list()])
    assert remaining == sorted(kept.blob_paths()) and not set(orphans) & set(remaining)

    await store.delete(kept.renditions[0].path)
    report = await fsck.run(store, catalog)
    assert [(p.kind, p.path) for p in report.problems] == [("missing", kept.renditions[0].path)]
