"""gc: only unreferenced blobs older than the grace period go; dry runs delete nothing."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from click.testing import Result
from typer.testing import CliRunner

from imgest.catalog.repo import Catalog
from imgest.cli import app
from imgest.jobs import gc
from imgest.storage.base import BlobMeta, BlobStore
from imgest.storage.local import LocalStore
from imgest.storage.paths import original_path, rendition_path
from tests.jobs.conftest import StoreImage

pytestmark = pytest.mark.anyio
LATER = datetime.now(UTC) + timedelta(hours=2)  # every blob written by a test is old by then


async def orphan(store: BlobStore, size: int = 1000) -> list[str]:
    """An original and its rendition that no row references (a crashed upload's leftovers)."""
    data = os.urandom(size)
    sha = hashlib.sha256(data).hexdigest()
    paths = [original_path(sha), rendition_path("default", "v1", sha, "jpg")]
    for path in paths:
        await store.put(path, data)
    return paths


async def invoke(args: list[str]) -> Result:
    """The CLI runs its own event loop: give it a thread of its own."""
    return await anyio.to_thread.run_sync(CliRunner().invoke, app, args)


async def listed(store: BlobStore) -> set[str]:
    return {meta.path async for meta in store.list()}


async def test_deletes_only_old_unreferenced_blobs(
    store: LocalStore, catalog: Catalog, store_image: StoreImage
) -> None:
    kept = [await store_image(n) for n in range(3)]
    orphans = await orphan(store, 1000)
    await store.put("healthz/other-tool", b"x")  # outside the layout prefixes: never listed
    await store.put("originals/not-a-blob", b"y")  # inside, but not a layout path

    young = await gc.run(store, catalog)  # default grace: everything here is brand new
    assert (young.deleted, young.young, young.referenced) == (0, 2, 6)
    assert young.unrecognized == 1

    report = await gc.run(store, catalog, now=LATER)
    assert (report.deleted, report.deleted_bytes, report.referenced) == (2, 2000, 6)
    remaining = await listed(store)
    assert not set(orphans) & remaining
    assert {p for r in kept for p in r.blob_paths()} <= remaining
    assert {"healthz/other-tool", "originals/not-a-blob"} <= remaining


async def test_dry_run_lists_and_deletes_nothing(store: LocalStore, catalog: Catalog) -> None:
    orphans = await orphan(store, 1500)
    seen: list[str] = []
    report = await gc.run(
        store, catalog, now=LATER, dry_run=True, on_delete=lambda m: seen.append(m.path)
    )
    assert sorted(seen) == sorted(orphans) and report.deleted == 2
    assert set(orphans) <= await listed(store)


async def test_a_dry_run_leaves_out_what_a_writer_holds_a_lease_on(
    store: LocalStore, catalog: Catalog
) -> None:
    """Like a real run: a blob under a live write lease (an upload in flight, or one that could
    not drop its lease while the catalog was down) is reported leased, not as to be deleted."""
    held, free = await orphan(store, 1200), await orphan(store, 1300)
    lease = await anyio.to_thread.run_sync(catalog.take_write_lease, held)
    assert lease is not None
    seen: list[str] = []
    dry = await gc.run(
        store, catalog, grace=timedelta(0), dry_run=True, on_delete=lambda m: seen.append(m.path)
    )
    assert sorted(seen) == sorted(free) and (dry.deleted, dry.leased) == (2, 2)
    real = await gc.run(store, catalog, grace=timedelta(0), now=LATER)
    assert (real.deleted, real.leased) == (dry.deleted, dry.leased)
    assert set(held) <= await listed(store)


async def test_a_blob_rewritten_after_listing_is_kept(store: LocalStore, catalog: Catalog) -> None:
    """Listed as old, rewritten by an upload since: the look again under the lock keeps it."""
    paths = await orphan(store)
    cutoff = datetime.now(UTC) - timedelta(hours=1)
    report = gc.GcReport(dry_run=False, grace_s=3600)
    as_listed = [
        replace(await store.head(p), last_modified=cutoff - timedelta(days=1)) for p in paths
    ]
    await gc._Sweep(store, catalog, cutoff, report, None).batch(as_listed)
    assert (report.young, report.deleted) == (2, 0)
    assert set(paths) <= await listed(store)


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600),
                                          ("1.5h", 5400), ("2d", 172800), ("0", 0)])  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert gc.parse_duration(text).total_seconds() == seconds


def test_parse_duration_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="duration"):
        gc.parse_duration("soon")


async def test_cli_grace_zero_json_and_dry_run(
    store: LocalStore, catalog: Catalog, catalog_url: str, store_image: StoreImage
) -> None:
    await store_image(1)
    orphans = await orphan(store, 700)
    args = ["gc", "--storage", str(store.root), "--catalog", catalog_url, "--grace", "0"]
    dry = await invoke([*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert all(f"would delete {p} (700 bytes)" in dry.stdout for p in orphans)
    assert set(orphans) <= await listed(store)
    done = await invoke([*args, "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["deleted"], report["deleted_bytes"], report["referenced"]) == (2, 1400, 2)
    assert not set(orphans) & await listed(store)
    bad = await invoke([*args[:-1], "soon"])
    assert bad.exit_code == 2 and "--grace" in bad.stderr


def test_cli_unreachable_catalog_exits_3(tmp_path: Path) -> None:
    from tests.services.imgest_server import free_port

    url = f"postgresql://imgest@127.0.0.1:{free_port()}/imgest"
    (tmp_path / "blobs").mkdir()  # the store exists; the database does not answer
    result = CliRunner().invoke(
        app, ["gc", "--storage", str(tmp_path / "blobs"), "--catalog", url, "--grace", "0"]
    )
    assert result.exit_code == 3 and "catalog" in result.stderr.lower()


class SlowHead:
    """A store whose HEAD takes `seconds` (a slow backend)."""

    def __init__(self, inner: BlobStore, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def head(self, path: str) -> BlobMeta:
        await anyio.sleep(self.seconds)
        return await self.inner.head(path)


async def test_no_delete_is_sent_under_a_lease_older_than_half_its_ttl(
    store: LocalStore, catalog: Catalog
) -> None:
    """A delete that might land after the delete lease expired (when a writer may already
    have leased and stored the path again) is never sent: gc leaves the blob to its next run."""
    orphans = await orphan(store)
    catalog.lease_ttl = timedelta(seconds=0.4)
    slow = SlowHead(store, 0.3)  # past half the TTL by the time the HEAD answers
    report = await gc.run(slow, catalog, now=LATER)  # type: ignore[arg-type]
    assert report.deleted == 0 and set(orphans) <= await listed(store)
    assert catalog.leases() == []  # the delete lease is dropped all the same
    catalog.lease_ttl = timedelta(minutes=5)
    assert (await gc.run(store, catalog, now=LATER)).deleted == 2
