"""The image lock: racing inserts yield one row; write and delete leases exclude each other."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from imgest.catalog.leases import Lease
from imgest.catalog.records import ImageRecord
from imgest.catalog.repo import Catalog
from imgest.storage.paths import original_path, rendition_path


@pytest.fixture
def other(catalog: Catalog, catalog_url: str) -> Iterator[Catalog]:
    """The same catalog through another engine (connection pool), as another process has."""
    second = Catalog.open(catalog_url)
    yield second
    second.close()


def test_racing_inserts_of_one_image_record_it_once(
    catalog_url: str, make_record: Callable[..., ImageRecord]
) -> None:
    """Like two API processes: separate engines, same id, started together."""
    catalogs = [Catalog.open(catalog_url) for _ in range(4)]
    rec = make_record(7, tags=("a", "b"))
    start = threading.Barrier(len(catalogs))

    def add(cat: Catalog) -> bool:
        start.wait()
        return cat.add_image(rec)

    with ThreadPoolExecutor(len(catalogs)) as pool:
        results = list(pool.map(add, catalogs))
    assert sorted(results) == [False, False, False, True]
    assert catalogs[0].get_image(rec.id) == rec
    assert catalogs[0].list_images().items == [rec]
    for cat in catalogs:
        cat.close()


def test_a_write_lease_and_a_delete_lease_never_both_hold_a_path(
    catalog: Catalog, other: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    """A writer's W1 and gc's D1 racing from two engines (as two processes): under the image's
    lock exactly one of them gets the path, every round."""
    rec = make_record(2)
    paths = list(rec.blob_paths())

    def write(start: threading.Barrier) -> Lease | None:
        start.wait()
        return other.take_write_lease(paths)

    def delete(start: threading.Barrier, gc_lease: Lease) -> None:
        start.wait()
        catalog.lease_orphans(rec.id, paths, gc_lease)

    for _ in range(10):
        start = threading.Barrier(2)
        gc_lease = Lease("delete", ())
        with ThreadPoolExecutor(2) as pool:
            taking = pool.submit(write, start)
            pool.submit(delete, start, gc_lease).result()
            writer = taking.result()
        if writer is None:  # gc first: the writer must wait for D3
            assert set(gc_lease.paths) == set(paths)
        else:  # the writer first: gc leaves its paths alone
            assert gc_lease.paths == ()
            other.end_lease(writer)
        catalog.end_lease(gc_lease)
        assert catalog.leases() == []


def test_delete_image_leases_only_blobs_no_writer_holds(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    """An upload of the same bytes in flight (its write lease) keeps its blobs; the others
    get a delete lease, which holds off a new writer until it ends."""
    rec = make_record(1)
    catalog.add_image(rec)
    uploading = catalog.take_write_lease([rec.original_path])
    assert uploading is not None
    lease = Lease("delete", ())
    assert catalog.delete_image(rec.id, lease) == rec
    assert lease.paths == (rec.renditions[0].path,)
    assert catalog.take_write_lease([rec.renditions[0].path]) is None  # being deleted
    catalog.end_lease(lease)
    assert catalog.take_write_lease([rec.renditions[0].path]) is not None


def test_lease_orphans_leases_only_unreferenced_paths(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    rec = make_record(1)
    catalog.add_image(rec)
    stale = rendition_path("default", "v0", rec.id, "jpg")
    lease = Lease("delete", ())
    assert catalog.lease_orphans(rec.id, [rec.original_path, stale], lease) == [stale]
    assert lease.paths == (stale,)
    again = Lease("delete", ())
    assert catalog.lease_orphans(rec.id, [rec.original_path], again) == []
    assert again.paths == ()


def test_referenced_and_blob_refs(
    catalog: Catalog, stored: Callable[[int], list[ImageRecord]]
) -> None:
    records = stored(7)
    missing = original_path("0" * 64)
    paths = [r.original_path for r in records] + [records[0].renditions[0].path, missing]
    assert catalog.referenced([*paths, "healthz/probe"]) == set(paths) - {missing}
    pages = list(catalog.blob_refs(batch=3))
    assert [len({ref.image_id for ref in page}) for page in pages] == [3, 3, 1]
    refs = [ref for page in pages for ref in page]
    assert {(ref.path, ref.kind) for ref in refs} == {
        (path, kind) for r in records for path, kind in
        [(r.original_path, "original"), (r.renditions[0].path, "rendition")]
    }  # fmt: skip
    assert {ref.bytes for ref in refs if ref.kind == "original"} == {r.bytes for r in records}
