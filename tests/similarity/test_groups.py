"""Near-duplicate groups: components of pairs with cosine >= threshold, named by smallest id."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from imgest.catalog.records import ImageRecord
from imgest.catalog.repo import Catalog
from imgest.similarity import groups
from imgest.similarity.groups import components, near_duplicate_groups
from imgest.similarity.vectors import embedding_record


def make_record(n: int) -> ImageRecord:
    image_id = f"{n:064x}"
    return ImageRecord(
        id=image_id,
        format="jpeg",
        content_type="image/jpeg",
        width=1,
        height=1,
        frames=1,
        bytes=1,
        filename=f"{n}.jpg",
        original_path=f"originals/{image_id}",
        created_at=datetime.now(UTC),
    )


def test_components_are_transitive_and_named_by_the_smallest_id() -> None:
    # e~d~c chain (each neighbour >= 0.9, e and c not), b alone, a~f.
    vectors = np.array(
        [
            [0.0, 1.0, 0.0, 0.0],  # a
            [0.0, 0.0, 0.0, 1.0],  # b
            [1.0, 0.0, 0.0, 0.0],  # c
            [0.95, 0.0, 0.312, 0.0],  # d
            [0.81, 0.0, 0.586, 0.0],  # e
            [0.0, 0.99, 0.141, 0.0],  # f
        ],
        np.float32,
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = ["a", "b", "c", "d", "e", "f"]
    assert float(vectors[2] @ vectors[4]) < 0.9 <= float(vectors[3] @ vectors[4])
    want = {"a": "a", "f": "a", "b": "b", "c": "c", "d": "c", "e": "c"}
    assert components(ids, vectors, 0.9) == want
    assert components(ids[::-1], vectors[::-1].copy(), 0.9) == want  # order does not matter
    assert components([], np.zeros((0, 4), np.float32), 0.9) == {}


def test_blocks_see_pairs_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(groups, "BLOCK", 3)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(10, 8)).astype(np.float32)
    vectors[9] = vectors[0]  # first and last: different blocks
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"id{i}" for i in range(10)]
    found = components(ids, vectors, 0.999)
    assert found["id9"] == "id0" and len(set(found.values())) == 9


def test_near_duplicate_groups_reads_the_catalog(tmp_path: Path) -> None:
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}")
    now = datetime.now(UTC)
    vectors = {1: [1.0, 0.0, 0.0], 2: [0.99, 0.1, 0.0], 3: [0.0, 0.0, 1.0]}
    ids = {}
    for n, v in vectors.items():
        record = make_record(n)
        ids[n] = record.id
        e = embedding_record(
            np.array(v, np.float32),
            model="m",
            model_version="v1",
            pipeline="default",
            pipeline_version="p",
            created_at=now,
        )
        assert catalog.add_image(record, embeddings=(e,))
    other = embedding_record(
        np.array([1.0, 0.0, 0.0], np.float32),
        model="m",
        model_version="v2",
        pipeline="default",
        pipeline_version="p",
        created_at=now,
    )
    catalog.add_results([], embeddings=[(ids[3], other)])
    got = near_duplicate_groups(catalog, "m", "v1", 0.95)
    first = min(ids[1], ids[2])
    assert got == {ids[1]: first, ids[2]: first, ids[3]: ids[3]}
    assert near_duplicate_groups(catalog, "m", "v2", 0.95) == {ids[3]: ids[3]}
    assert near_duplicate_groups(catalog, "m", "nope", 0.95) == {}
    catalog.close()
