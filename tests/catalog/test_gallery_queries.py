"""The gallery's catalog queries on SQLite and PostgreSQL: confidence sort and range, the
disagreement filter (synonyms, case, LIKE wildcards in labels), id sets, bulk labels."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from imgest.catalog.pages import _scored
from imgest.catalog.records import ImageRecord, Label, PredictionRecord
from imgest.catalog.repo import Catalog, ImageFilter
from tests.catalog.conftest import T0

# (top-1 class of the latest prediction, its score, ground truth) per image.
ROWS = [
    ("tabby, tabby cat", 0.91, "Tabby Cat"),  # a synonym, another case: agrees
    ("tabby, tabby cat", 0.40, "tiger cat"),  # disagrees
    ("100%_sure", 0.75, "100%_sure"),  # wildcards, equal: agrees
    ("100x sure", 0.75, "100%_sure"),  # would match if % and _ were wildcards: disagrees
    ("espresso", 0.10, None),  # no ground truth: never disagrees
]


@pytest.fixture
def scored(catalog: Catalog, make_record: Callable[..., ImageRecord]) -> list[str]:
    ids = []
    for n, (cls, score, truth) in enumerate(ROWS):
        record = make_record(n, at=T0 + timedelta(minutes=n))
        assert catalog.add_image(record)
        later = PredictionRecord(
            "m2", "mv2", "default", "v1", (Label(cls, 0, score),), T0 + timedelta(hours=1)
        )
        assert catalog.add_prediction(record.id, later)
        if truth is not None:
            catalog.update_image(record.id, label=truth)
        ids.append(record.id)
    record = make_record(99, at=T0 + timedelta(minutes=99))
    assert catalog.add_image(dataclasses.replace(record, predictions=()))
    ids.append(record.id)  # no prediction at all
    return ids


def every(catalog: Catalog, sort: str, where: ImageFilter | None = None) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = catalog.list_images(limit=2, cursor=cursor, where=where, sort=sort)  # type: ignore[arg-type]
        seen += [i.id for i in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def test_confidence_sorts_page_through_every_image_once(
    catalog: Catalog, scored: list[str]
) -> None:
    scores = [score for _, score, _ in ROWS]
    ties = sorted(range(5), key=lambda n: (-scores[n], [-ord(c) for c in scored[n]]))
    most = every(catalog, "most_confident")
    assert most[-1] == scored[5]  # without a prediction: last
    assert [scores[scored.index(i)] for i in most[:-1]] == sorted(scores, reverse=True)
    assert most[:-1] == [scored[n] for n in ties]
    least = every(catalog, "least_confident")
    assert least == most[::-1]
    assert every(catalog, "newest") == scored[::-1]


def test_confidence_range_uses_the_latest_prediction(catalog: Catalog, scored: list[str]) -> None:
    where = ImageFilter(min_confidence=0.5, max_confidence=0.8)
    assert sorted(every(catalog, "newest", where)) == sorted([scored[2], scored[3]])
    # The first prediction of each (0.9) no longer counts.
    assert every(catalog, "newest", ImageFilter(min_confidence=0.95)) == []


def test_disagreement_in_sql_matches_the_python_rule(catalog: Catalog, scored: list[str]) -> None:
    found = every(catalog, "newest", ImageFilter(disagrees=True))
    assert sorted(found) == sorted([scored[1], scored[3]])


def test_id_sets_and_bulk_labels(catalog: Catalog, scored: list[str]) -> None:
    where = ImageFilter(ids=frozenset(scored[:2]))
    assert sorted(every(catalog, "most_confident", where)) == sorted(scored[:2])
    missing = "0" * 64
    assert catalog.set_labels([scored[4], missing, scored[5], scored[4]], "x") == [
        scored[4],
        scored[5],
    ]
    for image_id in scored[4:]:
        record = catalog.get_image(image_id)
        assert record is not None and record.label == "x"
    assert catalog.set_labels([scored[4]], None) == [scored[4]]
    record = catalog.get_image(scored[4])
    assert record is not None and record.label is None


@pytest.mark.parametrize("sort", ["most_confident", "least_confident"])
def test_a_confidence_page_walks_the_score_index_instead_of_sorting_the_corpus(
    tmp_path: Path, sort: str
) -> None:
    """SQLite's plan: the predictions' score index, in order, with no sort of every row (a
    page of 24 out of 100,000 images took 1.2 to 2.2 s that way, 13 to 18 ms this way)."""
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        query = _scored(ImageFilter(disagrees=True), sort == "most_confident", (0.5, "a" * 64))
        with catalog.engine.connect() as conn:
            sql = str(query.limit(25).compile(conn, compile_kwargs={"literal_binds": True}))
            plan = " | ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    finally:
        catalog.close()
    assert "ix_predictions_top1_score_image_id" in plan, plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan, plan
