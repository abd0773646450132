"""Near-duplicate groups: connected components of the pairs of images whose embeddings are at
least `threshold` similar (cosine), each named by its smallest image id.

`components` is the exact definition: every pair compared, a block of rows against the rows
after it (n^2 d multiply-adds: about a minute for 100k images on one core). It is the reference
the tests hold `IncrementalGroups` to, which is what the server, export and compare use:

- a union-find over image ids, fed in catalog order (`embeddings_since`); each new embedding
  is added to an index and then searched in it for every neighbour at or above the threshold,
  so each pair is looked at once, when its later image arrives, and an update costs what
  arrived since the last one (nothing when nothing did), not n^2 again;
- the index is exact below `ann_min_vectors` (a float32 matrix: a range search by one matrix
  product, the same pairs `components` finds) and the usearch ANN graph from there on
  (`imgest.similarity.ann`, the server's settings): the k nearest, k doubled while the k-th is
  still at or above the threshold, up to MAX_NEIGHBOURS. A component needs a spanning tree,
  not every edge, so an edge the graph misses matters only where it was a component's one
  link; at 1M vectors the graph finds 0.95+ of the true top 10 (docs/similarity-index.md);
- deletions: the catalog's count of embeddings up to the last one read is checked on every
  update; fewer than the groups hold (or an image embedded again) and they are computed afresh,
  since a deleted image may have been the one link of two groups.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from imgest.catalog.embeddings import StoredEmbedding
from imgest.similarity.vectors import from_bytes

if TYPE_CHECKING:
    from imgest.similarity.ann import AnnIndex

BLOCK = 2048
PAGE = 10_000
NEIGHBOURS = 16  # the first k of an ANN range search (doubled while all are in range)
MAX_NEIGHBOURS = 1024


class EmbeddingSource(Protocol):
    """The catalog query groups need (Catalog implements it)."""

    def embeddings_since(
        self, model_version: str, after: int = 0, *, limit: int = 10_000
    ) -> list[StoredEmbedding]: ...

    def embedding_count(self, model_version: str, upto: int) -> int: ...


def components(
    ids: list[str], vectors: npt.NDArray[np.float32], threshold: float
) -> dict[str, str]:
    """image id -> the smallest id of its component of pairs with cosine >= threshold."""
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    n = len(ids)
    for start in range(0, n, BLOCK):
        block = vectors[start : start + BLOCK]
        for other in range(start, n, BLOCK):  # this block against itself and every later one
            sims = block @ vectors[other : other + BLOCK].T
            rows, cols = np.nonzero(sims >= threshold)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                a, b = start + r, other + c
                if b <= a:
                    continue
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    smallest: dict[int, str] = {}
    for i, image_id in enumerate(ids):
        r = root(i)
        if r not in smallest or image_id < smallest[r]:
            smallest[r] = image_id
    return {image_id: smallest[root(i)] for i, image_id in enumerate(ids)}


class IncrementalGroups:
    """The near-duplicate groups of one model version's embeddings, kept current by `update`
    (thread-safe; blocking: call from a worker thread in the server)."""

    def __init__(
        self,
        catalog: EmbeddingSource,
        model_version: str,
        threshold: float,
        *,
        ann_min_vectors: int = 2_000,
    ) -> None:
        self.catalog = catalog
        self.model_version = model_version
        self.threshold = threshold
        self.ann_min_vectors = ann_min_vectors  # settings.ann_min_vectors
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._seen = 0  # the highest embeddings.id read
        self._ids: list[str] = []  # row number -> image id
        self._row: dict[str, int] = {}
        self._parent: list[int] = []
        self._smallest: dict[int, str] = {}  # root row -> smallest id of its component
        self._rows = np.zeros((0, 0), np.float32)  # exact regime: the vectors, grown by doubling
        self._ann: AnnIndex | None = None
        self.recomputed = 0  # full recomputations after deletions (for tests and logs)

    def __len__(self) -> int:
        return len(self._ids)

    def update(self) -> dict[str, str]:
        """Read what was embedded since the last call, join its groups, and answer every image
        -> its group id (the smallest image id of its group)."""
        with self._lock:
            self._catch_up()
            held = self.catalog.embedding_count(self.model_version, self._seen)
            if held != len(self._ids):  # some were deleted: groups may split
                recomputed = self.recomputed + 1
                self._reset()
                self.recomputed = recomputed
                self._catch_up()
            return {image_id: self._smallest[self._root(i)] for i, image_id in enumerate(self._ids)}

    def _catch_up(self) -> None:
        while page := self.catalog.embeddings_since(self.model_version, self._seen, limit=PAGE):
            self._seen = page[-1].seq
            if any(e.image_id in self._row for e in page):  # embedded again: start afresh
                self._reset()
                continue
            self._add(
                [e.image_id for e in page], np.stack([from_bytes(e.vector, e.dim) for e in page])
            )

    def _add(self, ids: list[str], vectors: npt.NDArray[np.float32]) -> None:
        start = len(self._ids)
        for n, image_id in enumerate(ids, start):
            self._ids.append(image_id)
            self._row[image_id] = n
            self._parent.append(n)
            self._smallest[n] = image_id
        if self._ann is None and start + len(ids) >= max(self.ann_min_vectors, 1):
            self._to_ann(vectors)
        if self._ann is None:
            self._add_exact(start, vectors)
        else:
            self._add_ann(start, vectors)

    def _add_exact(self, start: int, vectors: npt.NDArray[np.float32]) -> None:
        end = start + len(vectors)
        if end > len(self._rows):
            grown = np.zeros((max(end, 2 * len(self._rows), 64), vectors.shape[1]), np.float32)
            if start:
                grown[:start] = self._rows[:start]
            self._rows = grown
        self._rows[start:end] = vectors
        for at in range(start, end, BLOCK):  # each new row against every row before it
            block = self._rows[at : min(at + BLOCK, end)]
            rows, cols = np.nonzero(block @ self._rows[: min(at + BLOCK, end)].T >= self.threshold)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                if c < at + r:
                    self._union(at + r, c)

    def _to_ann(self, new: npt.NDArray[np.float32]) -> None:
        """Past `ann_min_vectors`: the rows held so far go into the ANN graph (and the new
        ones through `_add_ann`); the float32 matrix is dropped."""
        from imgest.similarity.ann import AnnIndex  # usearch, only for corpora this big

        held = len(self._ids) - len(new)
        self._ann = AnnIndex(new.shape[1])
        self._ann.add([str(i) for i in range(held)], self._rows[:held])
        self._rows = np.zeros((0, 0), np.float32)

    def _add_ann(self, start: int, vectors: npt.NDArray[np.float32]) -> None:
        assert self._ann is not None
        self._ann.add([str(i) for i in range(start, start + len(vectors))], vectors)
        for n, vector in enumerate(vectors, start):
            k = NEIGHBOURS
            while True:
                found = self._ann.search(vector, k)
                for other, score in found:
                    if score >= self.threshold and int(other) != n:
                        self._union(n, int(other))
                if len(found) < k or found[-1][1] < self.threshold or k >= MAX_NEIGHBOURS:
                    break
                k *= 2

    def _root(self, i: int) -> int:
        parent = self._parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._root(a), self._root(b)
        if ra == rb:
            return
        keep, gone = min(ra, rb), max(ra, rb)
        self._parent[gone] = keep
        self._smallest[keep] = min(self._smallest[keep], self._smallest.pop(gone))


def near_duplicate_groups(
    catalog: EmbeddingSource,
    model: str,
    model_version: str,
    threshold: float,
    *,
    ann_min_vectors: int = 2_000,
) -> dict[str, str]:
    """Every image with an embedding by `model`@`model_version` -> its group id: the smallest
    image id of its connected component of pairs with cosine >= `threshold`. An image with no
    near-duplicate is its own group. One pass of `IncrementalGroups` (for one-off jobs)."""
    del model  # the version (a sha256) names the model; the name is for the caller's logs
    found = IncrementalGroups(catalog, model_version, threshold, ann_min_vectors=ann_min_vectors)
    return found.update()
