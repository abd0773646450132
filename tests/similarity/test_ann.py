"""AnnIndex: recall against exact search on generated clustered vectors, updates, save/load."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import numpy.typing as npt
import pytest

from imgest.similarity.ann import AnnIndex
from imgest.similarity.index import ExactIndex

DIM = 64


def clustered(n: int, seed: int, centres: int = 20) -> npt.NDArray[np.float32]:
    """Normalised vectors around a few centres (real embeddings are clustered, not noise)."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(0).standard_normal((centres, DIM)).astype(np.float32)
    rows = means[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, DIM))
    rows = rows.astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def exact(
    vectors: npt.NDArray[np.float32], ids: list[str], query: npt.NDArray[np.float32], k: int
) -> list[str]:
    """The true top-k by cosine (ExactIndex, the contract's exact search)."""
    index = ExactIndex(DIM)
    index.add(ids, vectors)
    return [i for i, _ in index.search(query, k)]


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], npt.NDArray[np.float32]]:
    vectors = clustered(3000, seed=1)
    return [f"img{i:05d}" for i in range(len(vectors))], vectors


@pytest.fixture(scope="module")
def built(corpus: tuple[list[str], npt.NDArray[np.float32]]) -> AnnIndex:
    ids, vectors = corpus
    index = AnnIndex(DIM)
    index.add(ids, vectors)
    return index


def recall_at(
    index: AnnIndex, ids: list[str], vectors: npt.NDArray[np.float32], k: int = 10
) -> float:
    queries = clustered(100, seed=2)
    hits = 0
    for query in queries:
        truth = set(exact(vectors, ids, query, k))
        hits += len(truth & {i for i, _ in index.search(query, k)})
    return hits / (k * len(queries))


def test_recall_against_exact(
    built: AnnIndex, corpus: tuple[list[str], npt.NDArray[np.float32]]
) -> None:
    ids, vectors = corpus
    assert len(built) == len(ids)
    assert recall_at(built, ids, vectors) >= 0.95


def test_search_answers_cosines_best_first(
    built: AnnIndex, corpus: tuple[list[str], npt.NDArray[np.float32]]
) -> None:
    ids, vectors = corpus
    found = built.search(vectors[7], 5)
    assert found[0][0] == ids[7] and found[0][1] == pytest.approx(1.0, abs=2e-3)
    scores = [s for _, s in found]
    assert scores == sorted(scores, reverse=True)
    for image_id, score in found:  # float16 storage: cosines within 1e-2 of the exact ones
        assert score == pytest.approx(float(vectors[ids.index(image_id)] @ vectors[7]), abs=1e-2)


def test_remove_and_replace() -> None:
    vectors = clustered(200, seed=3)
    ids = [f"i{n}" for n in range(200)]
    index = AnnIndex(DIM)
    index.add(ids, vectors)
    index.remove(["i5", "i6", "missing"])
    assert len(index) == 198 and "i5" not in index
    assert "i5" not in {i for i, _ in index.search(vectors[5], 10)}
    index.add(["i7"], vectors[8:9])  # replaced: i7 now sits where i8 is
    assert len(index) == 198
    assert {i for i, _ in index.search(vectors[8], 2)} == {"i7", "i8"}


def test_save_load_round_trip(
    built: AnnIndex, corpus: tuple[list[str], npt.NDArray[np.float32]]
) -> None:
    ids, vectors = corpus
    built_copy = AnnIndex.from_bytes(built.to_bytes())
    assert len(built_copy) == len(built) and built_copy.params == built.params
    for query in clustered(10, seed=4):
        assert built_copy.search(query, 10) == built.search(query, 10)
    built_copy.remove(ids[:10])
    built_copy.add(["new"], vectors[:1])  # keys keep counting after a load: no clash
    assert len(built_copy) == len(ids) - 9
    assert built_copy.search(vectors[0], 1)[0][0] == "new"
    again = AnnIndex.from_bytes(built_copy.to_bytes())
    assert again.search(vectors[0], 1)[0][0] == "new" and "img00001" not in again


def test_empty_index_round_trips_and_searches() -> None:
    empty = AnnIndex.from_bytes(AnnIndex(DIM).to_bytes())
    assert len(empty) == 0 and empty.search(clustered(1, seed=5)[0], 3) == []


@pytest.mark.parametrize("cut", [0, 5, 20, 200, -1])
def test_damaged_bytes_are_refused(built: AnnIndex, cut: int) -> None:
    data = built.to_bytes()
    with pytest.raises(ValueError):
        AnnIndex.from_bytes(data[:cut])


def test_bad_input_is_refused() -> None:
    index = AnnIndex(DIM)
    with pytest.raises(ValueError, match="ids for"):
        index.add(["a"], clustered(2, seed=6))
    with pytest.raises(ValueError, match="must be"):
        index.add(["a"], np.zeros((1, DIM + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="newline"):
        index.add(["a\nb"], clustered(1, seed=6))


def test_save_and_load_copy_the_graph_at_most_once() -> None:
    """A 1M index is ~2.7 GB: saving holds it twice at most, loading adds no copy of it."""
    index = AnnIndex(DIM)
    index.add([f"i{k}" for k in range(20_000)], clustered(20_000, seed=7))
    tracemalloc.start()
    try:
        data = index.to_bytes()
        _, saving = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        loaded = AnnIndex.from_bytes(data)
        _, loading = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert saving <= 2.3 * len(data), saving / len(data)
    assert loading - base <= 0.8 * len(data), (loading - base) / len(data)  # ids: ~0.5
    assert len(loaded) == 20_000


def test_importing_the_index_first_keeps_onnxruntime_importable() -> None:
    """usearch loaded before onnxruntime used to crash the next `import onnxruntime`."""
    code = "import imgest.similarity.ann, onnxruntime, sys; sys.exit(0)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
