"""gc: delete blobs no catalog row references, once they are older than a grace period.

Walks `originals/` and `renditions/` with `BlobStore.list`, asks the catalog which of each batch
of paths rows reference, and deletes the rest when their last-modified time is older than
`grace`. Memory stays at one batch of paths.

Why it never removes a blob a row relies on, whatever the grace period: every writer of such a
blob (ingest, on-demand renditions, export, rescore) goes through `imgest.storage.once`: it
stores the blob before it records its row, and checks the blob is still there under the image's
catalog lock just before it commits (storing it again, or with rescore leaving the row out, when
it is gone). gc deletes under the same lock, after looking again at both the catalog (no row
references the blob) and the blob (still older than the grace period). So gc either deletes
before the writer's check (which puts the blob back) or after the commit (and then sees the row
and keeps the blob). The grace period only spares writers in flight that extra work. Paths
outside the blob layout are reported and never deleted.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio.to_thread

from imgest.catalog.leases import Lease
from imgest.catalog.repo import Catalog
from imgest.storage.base import BlobMeta, BlobNotFoundError, BlobStore, StoreError
from imgest.storage.once import Deletion, deleting
from imgest.storage.paths import ORIGINALS_PREFIX, RENDITIONS_PREFIX, image_id_of

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=1)
BATCH = 500

_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`90`, `90s`, `30m`, `1h`, `2d` (or `1.5h`) as a timedelta; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (want e.g. 90s, 30m, 1h, 2d)")
    try:
        return timedelta(seconds=float(match["n"]) * _UNITS[match["unit"]])
    except OverflowError:  # more days than a timedelta holds (about 2.7 million years)
        raise ValueError(f"not a duration: {text!r} is longer than any grace period") from None


@dataclass
class GcReport:
    """What one gc run found and did (counts and bytes)."""

    dry_run: bool
    grace_s: float
    scanned: int = 0
    scanned_bytes: int = 0
    referenced: int = 0
    young: int = 0  # unreferenced, but inside the grace period: may be an upload in flight
    unrecognized: int = 0  # not a path of the blob layout: left alone
    deleted: int = 0  # with dry_run: would be deleted
    deleted_bytes: int = 0
    failed: int = 0  # deletes that storage refused; the next run retries them
    leased: int = 0  # unreferenced, but a writer holds a live write lease on it: left alone
    by_prefix: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The report as plain JSON-able values."""
        return dict(self.__dict__)


async def run(
    store: BlobStore,
    catalog: Catalog,
    *,
    grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
    now: datetime | None = None,
    on_delete: Callable[[BlobMeta], None] | None = None,
) -> GcReport:
    """Delete (or with `dry_run` only report) unreferenced blobs older than `grace`."""
    await anyio.to_thread.run_sync(catalog.ping)  # no catalog, no way to tell orphans
    cutoff = (now or datetime.now(UTC)) - grace
    report = GcReport(dry_run=dry_run, grace_s=grace.total_seconds())
    sweep = _Sweep(store, catalog, cutoff, report, on_delete)
    for prefix in (ORIGINALS_PREFIX, RENDITIONS_PREFIX):
        batch: list[BlobMeta] = []
        async for meta in store.list(prefix):
            report.scanned += 1
            report.scanned_bytes += meta.size
            report.by_prefix[prefix] = report.by_prefix.get(prefix, 0) + 1
            batch.append(meta)
            if len(batch) >= BATCH:
                await sweep.batch(batch)
                batch = []
        await sweep.batch(batch)
    log.info("gc: %s", report.as_dict())
    return report


class _Sweep:
    """The work of one run on one batch of listed blobs at a time."""

    def __init__(
        self,
        store: BlobStore,
        catalog: Catalog,
        cutoff: datetime,
        report: GcReport,
        on_delete: Callable[[BlobMeta], None] | None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.cutoff = cutoff
        self.report = report
        self.on_delete = on_delete or (lambda meta: None)

    async def batch(self, metas: list[BlobMeta]) -> None:
        if not metas:
            return
        paths = [m.path for m in metas]
        referenced = await anyio.to_thread.run_sync(self.catalog.referenced, paths)
        candidates: dict[str, list[BlobMeta]] = defaultdict(list)
        for meta in metas:
            image_id = image_id_of(meta.path)
            if meta.path in referenced:
                self.report.referenced += 1
            elif image_id is None:
                self.report.unrecognized += 1
                log.warning("gc: %s is not a path of the blob layout; left alone", meta.path)
            elif meta.last_modified >= self.cutoff:
                self.report.young += 1
            else:
                candidates[image_id].append(meta)
        for image_id, old in candidates.items():
            if self.report.dry_run:  # what a real run would do, leases included
                paths = [m.path for m in old]
                leased = await anyio.to_thread.run_sync(self.catalog.leased, paths)
                self.report.leased += len(leased)
                for meta in old:
                    if meta.path not in leased:
                        self._deleted(meta)
                continue
            await self._delete(image_id, [m.path for m in old])

    async def _delete(self, image_id: str, paths: list[str]) -> None:
        """D1..D3 of imgest.storage.once for one image's old unreferenced blobs."""

        def take(lease: Lease) -> list[str]:
            return self.catalog.lease_orphans(image_id, paths, lease)

        async with deleting(self.catalog, take) as (unreferenced, deletion):
            self.report.leased += len(unreferenced) - len(deletion.paths)
            for path in deletion.paths:
                if not await self._release(path, deletion):
                    break

    async def _release(self, path: str, deletion: Deletion) -> bool:
        """Delete one leased blob if it is still old enough (outside any transaction); False
        once the lease is too old to send anything more under it."""
        if not deletion.in_time():
            log.warning("gc: delete lease near expiry; %s is left to the next run", path)
            return False
        try:
            meta = await self.store.head(path)
        except BlobNotFoundError:
            return True  # someone else removed it meanwhile
        if meta.last_modified >= self.cutoff:
            self.report.young += 1  # rewritten since it was listed: an upload in flight
            return True
        if not deletion.in_time():  # the HEAD took long: a delete sent now might land late
            log.warning("gc: delete lease near expiry; %s is left to the next run", path)
            return False
        try:
            await self.store.delete(path)
        except StoreError:
            self.report.failed += 1
            log.warning("gc: could not delete %s", path, exc_info=True)
            return True
        self._deleted(meta)
        return True

    def _deleted(self, meta: BlobMeta) -> None:
        self.report.deleted += 1
        self.report.deleted_bytes += meta.size
        self.on_delete(meta)
