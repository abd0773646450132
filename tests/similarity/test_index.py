"""ExactIndex: cosine search over float16 rows, add/replace/remove, against a float64 reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from imgest.similarity.index import ExactIndex, VectorIndex
from imgest.similarity.vectors import from_bytes, to_bytes


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_search_matches_exact_float64_cosine_best_first(dtype: type[np.floating[Any]]) -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(500, 64)))
    ids = [f"{i:04d}" for i in range(500)]
    index: VectorIndex = ExactIndex(64, dtype=dtype)
    index.add(ids, vectors)
    assert len(index) == 500
    query = unit(rng.normal(size=(1, 64)))[0]
    got = index.search(query, 10)
    want = np.argsort(-(vectors.astype(np.float64) @ query))[:10]
    assert [i for i, _ in got] == [ids[i] for i in want]
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    for (_, score), i in zip(got, want, strict=True):
        assert score == pytest.approx(float(vectors[i] @ query), abs=2e-3)  # float16 storage
    assert index.search(vectors[7] * 5.0, 1)[0][0] == ids[7]  # any scale: normalised
    assert index.search(query, 1000)[-1][0] in ids and len(index.search(query, 1000)) == 500


def test_add_replaces_and_remove_forgets() -> None:
    index = ExactIndex(3)
    index.add(["a", "b", "c"], np.eye(3, dtype=np.float32))
    index.add(["a"], np.array([[0.0, 1.0, 0.0]], dtype=np.float32))  # replaced, not added
    assert len(index) == 3
    assert [i for i, _ in index.search(np.array([0, 1, 0], np.float32), 2)] == ["a", "b"]
    index.remove(["a", "zzz"])  # unknown ids are ignored
    assert len(index) == 2 and "a" not in index
    assert index.search(np.array([0, 1, 0], np.float32), 1) == [("b", 1.0)]
    index.remove(["b", "c"])
    assert len(index) == 0 and index.search(np.array([1, 0, 0], np.float32), 3) == []
    index.add(["d"], np.array([[0, 0, 2]], np.float32))  # usable again after emptying
    assert index.search(np.array([0, 0, 1], np.float32), 3) == [("d", 1.0)]


def test_wrong_widths_are_refused() -> None:
    index = ExactIndex(4)
    with pytest.raises(ValueError):
        ExactIndex(4, dtype=np.float64)
    with pytest.raises(ValueError):
        index.add(["a"], np.ones((1, 3), np.float32))
    with pytest.raises(ValueError):
        index.search(np.ones(5, np.float32), 1)


def test_stored_bytes_are_float16_normalised_and_round_trip() -> None:
    vector = np.arange(1, 1281, dtype=np.float32)
    data = to_bytes(vector)
    assert len(data) == 2 * 1280
    back = from_bytes(data, 1280)
    assert back.dtype == np.float32 and np.linalg.norm(back) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(back, vector / np.linalg.norm(vector), atol=1e-3)
    with pytest.raises(ValueError):
        from_bytes(data, 1000)
