"""The image lock: racing inserts yield one row; uploads wait for a delete or gc holding it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

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


def test_an_upload_waits_for_a_delete_holding_the_lock(
    catalog: Catalog, other: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    """The upload's check of its blobs runs only after the delete (and its blob removal)."""
    rec = make_record(1)
    catalog.add_image(rec)
    events: list[str] = []
    added: list[bool] = []

    def upload() -> None:
        added.append(other.add_image(rec, verify=lambda: events.append("upload verifies")))

    def release(removed: ImageRecord) -> None:
        assert removed == rec
        racer.start()
        time.sleep(0.5)  # long enough for the upload to reach the lock, if it did not wait
        events.append("delete removes blobs")

    racer = threading.Thread(target=upload)
    assert catalog.delete_image(rec.id, release=release) == rec
    racer.join(timeout=30)
    assert events == ["delete removes blobs", "upload verifies"]
    assert added == [True]
    assert catalog.get_image(rec.id) == rec


def test_an_upload_waits_for_gc_holding_the_lock(
    catalog: Catalog, other: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    """No row to conflict on here: only the image lock makes the upload wait."""
    rec = make_record(2)
    events: list[str] = []
    added: list[bool] = []

    def upload() -> None:
        added.append(other.add_image(rec, verify=lambda: events.append("upload verifies")))

    def release(paths: list[str]) -> None:
        racer.start()
        time.sleep(0.5)
        events.append("gc removes blobs")

    racer = threading.Thread(target=upload)
    assert catalog.release_orphans(rec.id, [rec.original_path], release) == [rec.original_path]
    racer.join(timeout=30)
    assert events == ["gc removes blobs", "upload verifies"]
    assert added == [True]


def test_release_orphans_hands_over_only_unreferenced_paths(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    rec = make_record(1)
    catalog.add_image(rec)
    stale = rendition_path("default", "v0", rec.id, "jpg")
    released: list[list[str]] = []
    got = catalog.release_orphans(rec.id, [rec.original_path, stale], released.append)
    assert got == [stale] and released == [[stale]]
    assert catalog.release_orphans(rec.id, [rec.original_path], released.append) == []
    assert released == [[stale]]  # not called when nothing is unreferenced


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
