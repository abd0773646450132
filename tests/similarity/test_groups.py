"""Near-duplicate groups: components of pairs with cosine >= threshold, named by smallest id."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from imgest.catalog.embeddings import StoredEmbedding
from imgest.catalog.records import ImageRecord
from imgest.catalog.repo import Catalog
from imgest.similarity import groups
from imgest.similarity.groups import IncrementalGroups, components, near_duplicate_groups
from imgest.similarity.vectors import embedding_record, to_bytes


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


class MemoryEmbeddings:
    """The catalog's embedding reads over a list, counting the rows handed out."""

    def __init__(self) -> None:
        self.rows: list[StoredEmbedding] = []
        self.read = 0

    def put(self, ids: list[str], vectors: np.ndarray) -> None:
        seq = self.rows[-1].seq if self.rows else 0
        for n, (image_id, v) in enumerate(zip(ids, vectors, strict=True), seq + 1):
            self.rows.append(StoredEmbedding(n, image_id, len(v), to_bytes(v)))

    def delete(self, image_id: str) -> None:
        self.rows = [e for e in self.rows if e.image_id != image_id]

    def embeddings_since(
        self, model_version: str, after: int = 0, *, limit: int = 10_000
    ) -> list[StoredEmbedding]:
        page = [e for e in self.rows if e.seq > after][:limit]
        self.read += len(page)
        return page

    def embedding_count(self, model_version: str, upto: int) -> int:
        return sum(1 for e in self.rows if e.seq <= upto)


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """`n` normalised rows around n/4 centres: chains and clusters near a 0.9 threshold."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 4, 1), dim))
    rows = centres[rng.integers(0, len(centres), n)] + 0.3 * rng.normal(size=(n, dim))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    # what the catalog stores is float16: compare on the same values
    return rows.astype(np.float16).astype(np.float32)


def clear_threshold(vectors: np.ndarray, near: float = 0.9) -> float:
    """A threshold close to `near` with no pair within 5e-6 of it: float32 sums in another
    order (BLAS blocks of other shapes) round differently in the last bits, so a pair exactly
    at the threshold may fall either side of it."""
    sims = vectors @ vectors.T
    close = np.sort(sims[(sims > near - 0.02) & (sims < near + 0.02)].astype(np.float64))
    edges = np.concatenate([[near - 0.02], close, [near + 0.02]])
    gaps = np.diff(edges)
    at = int(np.argmax(gaps))
    assert gaps[at] > 1e-5
    return float(edges[at] + gaps[at] / 2)


@pytest.mark.parametrize("ann_min_vectors", [10**9, 0], ids=["exact", "ann"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_groups_equal_the_exact_components(ann_min_vectors: int, seed: int) -> None:
    vectors = clustered(600, 32, seed)
    ids = [f"{n:08x}" for n in np.random.default_rng(seed).permutation(600)]
    t = clear_threshold(vectors)
    want = components(ids, vectors, t)
    assert 20 < len(set(want.values())) < 500  # groups of many sizes, not all one or none
    source = MemoryEmbeddings()
    live = IncrementalGroups(source, "v", t, ann_min_vectors=ann_min_vectors)
    for start, end in ((0, 1), (1, 250), (250, 251), (251, 600)):  # arriving in batches
        source.put(ids[start:end], vectors[start:end])
        got = live.update()
        assert got == components(ids[:end], vectors[:end], t)
    assert got == want and live.recomputed == 0


def test_incremental_groups_switch_to_the_index_past_ann_min_vectors() -> None:
    vectors = clustered(400, 32, 3)
    ids = [f"{n:08x}" for n in range(400)]
    source = MemoryEmbeddings()
    t = clear_threshold(vectors)
    live = IncrementalGroups(source, "v", t, ann_min_vectors=300)
    source.put(ids[:200], vectors[:200])
    live.update()
    assert live._ann is None
    source.put(ids[200:], vectors[200:])
    assert live.update() == components(ids, vectors, t)
    assert live._ann is not None and len(live._ann) == 400


def test_an_update_reads_and_searches_only_what_arrived_since_the_last() -> None:
    n = 6000
    vectors = clustered(n + 10, 64, 4)
    ids = [f"{i:08x}" for i in range(n + 10)]
    source = MemoryEmbeddings()
    t = clear_threshold(vectors)
    live = IncrementalGroups(source, "v", t, ann_min_vectors=10**9)
    source.put(ids[:n], vectors[:n])
    started = time.perf_counter()
    live.update()
    first = time.perf_counter() - started
    source.read = 0
    source.put(ids[n:], vectors[n:])
    started = time.perf_counter()
    got = live.update()
    again = time.perf_counter() - started
    assert source.read == 10  # the ten new rows, not the corpus again
    assert got == components(ids, vectors, t)
    # n^2 pairs once against 10 n now: far below a tenth even on a busy machine
    assert again < first / 10, (first, again)
    source.read = 0
    assert live.update() == got and source.read == 0


def test_a_deletion_splits_the_groups_it_joined() -> None:
    angles = np.radians([0.0, 20.0, 40.0])  # a~b~c (cos 20° = 0.94), a!~c (cos 40° = 0.77)
    bridge = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    assert float(bridge[0] @ bridge[2]) < 0.9 <= float(bridge[0] @ bridge[1])
    source = MemoryEmbeddings()
    live = IncrementalGroups(source, "v", 0.9)
    source.put(["a", "b", "c"], bridge)
    assert live.update() == {"a": "a", "b": "a", "c": "a"}
    source.delete("b")
    assert live.update() == {"a": "a", "c": "c"}
    assert live.recomputed == 1
    source.delete("a")
    assert live.update() == {"c": "c"}


def test_index_groups_are_the_same_on_every_run() -> None:
    """`export --split` keeps groups in one split "deterministic by seed": above
    ann_min_vectors the groups come from the usearch graph, so two builds over the same rows
    must give the same groups (single-threaded inserts in catalog order), including pairs that
    sit right at the threshold."""
    vectors = clustered(3000, 48, 5)
    ids = [f"{n:08x}" for n in np.random.default_rng(5).permutation(3000)]
    runs = []
    for _ in range(2):
        source = MemoryEmbeddings()
        source.put(ids, vectors)
        runs.append(IncrementalGroups(source, "v", 0.9, ann_min_vectors=0).update())
    assert runs[0] == runs[1]
    assert 20 < len(set(runs[0].values())) < 2900
