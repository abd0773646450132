"""The server's near-duplicate groups (LiveGroups): one incremental state per model version,
kept between calls, on a real catalog (deletions included)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from imgest.catalog.repo import Catalog
from imgest.config import Settings
from imgest.duplicates import LiveGroups
from imgest.similarity.vectors import embedding_record
from tests.similarity.test_groups import make_record


def put(catalog: Catalog, n: int, vector: list[float], version: str = "v1") -> str:
    record = make_record(n)
    e = embedding_record(
        np.array(vector, np.float32),
        model="m",
        model_version=version,
        pipeline="default",
        pipeline_version="p",
        created_at=datetime.now(UTC),
    )
    assert catalog.add_image(record, embeddings=(e,))
    return record.id


def test_live_groups_join_new_images_split_on_deletion_and_follow_the_version(
    tmp_path: Path,
) -> None:
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}")
    live = LiveGroups(catalog, Settings(near_duplicate_threshold=0.9))
    assert live("v1") is None  # nothing embedded: no groups
    a = put(catalog, 1, [1.0, 0.0, 0.0])
    c = put(catalog, 3, [0.77, 0.64, 0.0])  # cos 40°-ish from a: apart
    assert live("v1") == {a: a, c: c}
    state = live._groups
    b = put(catalog, 2, [0.94, 0.34, 0.0])  # between them: joins both
    assert live("v1") == {a: a, b: a, c: a}
    assert live._groups is state and state.recomputed == 0  # the same state, updated
    catalog.delete_image(b)
    assert live("v1") == {a: a, c: c}
    assert state.recomputed == 1
    d = put(catalog, 4, [0.0, 0.0, 1.0], version="v2")
    assert live("v2") == {d: d}
    assert live._groups is not state
    catalog.close()
