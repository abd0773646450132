"""Blob leases: a writer's lease is spent with its rows or the rows are refused; stale ones go."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from imgest.catalog.leases import Lease, LeaseLost
from imgest.catalog.models import BlobLeaseRow
from imgest.catalog.records import ImageRecord, PredictionRecord
from imgest.catalog.repo import Catalog


def age(catalog: Catalog, lease: Lease, by: timedelta) -> None:
    """Make `lease` look taken `by` ago (a writer paused, a deleter crashed)."""
    with catalog.writing() as session:
        session.execute(
            update(BlobLeaseRow)
            .where(BlobLeaseRow.holder == lease.holder)
            .values(taken_at=datetime.now(UTC) - by)
        )


def test_add_image_spends_its_lease(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    rec = make_record(1)
    lease = catalog.take_write_lease(list(rec.blob_paths()))
    assert lease is not None and len(catalog.leases()) == 2
    assert catalog.add_image(rec, lease) is True
    assert lease.spent and catalog.leases() == []


def test_a_lost_lease_records_nothing(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    """gc found the writer's lease stale and dropped it: the rows must not commit."""
    rec = make_record(1)
    lease = catalog.take_write_lease(list(rec.blob_paths()))
    assert lease is not None
    age(catalog, lease, catalog.lease_ttl + timedelta(seconds=1))
    gc = Lease("delete", ())
    assert catalog.lease_orphans(rec.id, list(rec.blob_paths()), gc) == list(rec.blob_paths())
    assert set(gc.paths) == set(rec.blob_paths())  # the stale write lease did not stop gc
    with pytest.raises(LeaseLost):
        catalog.add_image(rec, lease)
    assert catalog.get_image(rec.id) is None and not lease.spent
    catalog.end_lease(gc)
    assert catalog.add_image(replace(rec, renditions=()))
    rendition = rec.renditions[0]
    again = catalog.take_write_lease([rendition.path])
    assert again is not None
    age(catalog, again, catalog.lease_ttl + timedelta(seconds=1))
    catalog.lease_orphans(rec.id, [rendition.path], Lease("delete", ()))
    with pytest.raises(LeaseLost):
        catalog.add_rendition(rec.id, rendition, again)
    image = catalog.get_image(rec.id)
    assert image is not None and image.renditions == ()


def test_a_stale_delete_lease_stops_blocking_writers(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    """gc crashed after D1: writers wait until its lease expires, then go on."""
    rec = make_record(1)
    crashed = Lease("delete", ())
    catalog.lease_orphans(rec.id, [rec.original_path], crashed)
    assert catalog.take_write_lease([rec.original_path]) is None
    age(catalog, crashed, catalog.lease_ttl - timedelta(seconds=5))
    assert catalog.take_write_lease([rec.original_path]) is None  # not stale yet
    age(catalog, crashed, catalog.lease_ttl + timedelta(seconds=1))
    lease = catalog.take_write_lease([rec.original_path])
    assert lease is not None
    assert [(p, purpose) for p, _, purpose, _ in catalog.leases()] == [(rec.original_path, "write")]


def test_add_results_leaves_out_renditions_whose_lease_is_gone(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    """rescore's driver holds no bytes: a rendition whose lease went stale is not recorded,
    its prediction is; the batch's other leases of the run's holder stay."""
    recs = [make_record(n) for n in range(3)]
    for rec in recs:
        catalog.add_image(replace(rec, renditions=(), predictions=()))
    run = "r" * 32
    paths = [r.renditions[0].path for r in recs]
    first = catalog.take_write_lease(paths[:2], run)
    later = catalog.take_write_lease(paths[2:], run)  # the next batch, same run
    assert first is not None and later is not None
    with catalog.writing() as session:  # gc dropped the lease of the second image's rendition
        session.execute(update(BlobLeaseRow).where(BlobLeaseRow.path == paths[1]).values(
            holder="gc" + "0" * 30))  # fmt: skip
    prediction: PredictionRecord = recs[0].predictions[0]
    results = [(r.id, prediction, r.renditions[0]) for r in recs[:2]]
    lease = Lease("write", tuple(paths[:2]), holder=run)
    assert catalog.add_results(results, lease) == 2
    assert lease.held == {paths[0]} and lease.spent
    images = [catalog.get_image(r.id) for r in recs[:2]]
    assert [len(i.renditions) if i else -1 for i in images] == [1, 0]
    assert {p for p, holder, _, _ in catalog.leases() if holder == run} == {paths[2]}
