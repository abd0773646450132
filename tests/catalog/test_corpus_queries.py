"""The corpus jobs' keyset walks: every selected image once, in id order, page by page."""

from __future__ import annotations

from collections.abc import Callable

from imgest.catalog.records import ImageRecord, PredictionKey
from imgest.catalog.repo import Catalog, ImageFilter

KEY = PredictionKey("m", "mv", "default", "v1")  # the prediction make_record gives


def test_image_pages_walk_every_selected_image_once_in_id_order(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    records = [make_record(n, tags=("odd",) if n % 2 else ()) for n in range(7)]
    for record in records:
        catalog.add_image(record)
    pages = [[p.id for p in page] for page in catalog.image_pages("default", "v1", limit=3)]
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == sorted(r.id for r in records)
    odd = catalog.image_pages("default", "v1", where=ImageFilter(tag="odd"), limit=2)
    assert [p.id for page in odd for p in page] == sorted(r.id for r in records[1::2])
    assert list(catalog.image_pages("default", "v1", lacking=KEY)) == []  # all have it


def test_paired_predictions_walk_every_pair_once_in_id_order(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    records = [make_record(n) for n in range(5)]
    for record in records:
        catalog.add_image(record)
    pages = list(catalog.paired_predictions(KEY, KEY, limit=2))
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [p.image_id for page in pages for p in page] == sorted(r.id for r in records)
