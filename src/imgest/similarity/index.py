"""Vector indexes over L2-normalised embeddings: the protocol and exact (brute-force) search.

`ExactIndex` keeps the vectors as float16 (half the memory of float32: 2.5 KB per 1280-d
image) and scores a query against them in float32, a block of rows at a time, so a search
never holds a float32 copy of the whole index. Cosine similarity is the dot product of
normalised vectors.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from imgest.scoring.model import normalized

BLOCK = 16_384  # rows converted to float32 at a time: 80 MB for 1280-d vectors


class VectorIndex(Protocol):
    """What a vector index does: add, remove, search by cosine similarity, count."""

    def add(self, ids: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        """Add (or replace) L2-normalised rows under `ids`."""
        ...

    def remove(self, ids: Sequence[str]) -> None:
        """Forget `ids` (unknown ones are ignored)."""
        ...

    def search(self, query: npt.NDArray[np.float32], k: int) -> list[tuple[str, float]]:
        """The `k` nearest ids to `query` with their cosine similarity, best first."""
        ...

    def __len__(self) -> int: ...


class ExactIndex:
    """Brute-force cosine search over float16 rows; thread-safe."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._rows = np.zeros((0, dim), dtype=np.float16)
        self._ids: list[str] = []
        self._where: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._where

    def add(self, ids: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        """Add (or replace) rows; they are normalised again here, so any scale will do."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of {vectors.shape[1]} values in a {self.dim}-d index")
        rows = normalized(vectors).astype(np.float16)
        with self._lock:
            for image_id, row in zip(ids, rows, strict=True):
                at = self._where.get(image_id)
                if at is None:
                    at = len(self._ids)
                    self._grow(at + 1)
                    self._ids.append(image_id)
                    self._where[image_id] = at
                self._rows[at] = row

    def _grow(self, size: int) -> None:
        if size > self._rows.shape[0]:
            bigger = np.zeros((max(size, 2 * self._rows.shape[0], 64), self.dim), np.float16)
            bigger[: len(self._ids)] = self._rows[: len(self._ids)]
            self._rows = bigger

    def remove(self, ids: Sequence[str]) -> None:
        """Forget `ids`: each row is replaced by the last one (no holes to skip in search)."""
        with self._lock:
            for image_id in ids:
                at = self._where.pop(image_id, None)
                if at is None:
                    continue
                last = len(self._ids) - 1
                if at != last:
                    moved = self._ids[last]
                    self._rows[at] = self._rows[last]
                    self._ids[at] = moved
                    self._where[moved] = at
                self._ids.pop()

    def search(self, query: npt.NDArray[np.float32], k: int) -> list[tuple[str, float]]:
        """The `k` rows most similar to `query` (cosine), best first; ties by id."""
        q = normalized(np.asarray(query, dtype=np.float32).reshape(-1))
        if q.shape != (self.dim,):
            raise ValueError(f"a query of {q.shape[0]} values in a {self.dim}-d index")
        with self._lock:
            n = len(self._ids)
            if n == 0 or k <= 0:
                return []
            scores = np.empty(n, dtype=np.float32)
            for start in range(0, n, BLOCK):
                block = self._rows[start : min(start + BLOCK, n)].astype(np.float32)
                scores[start : start + len(block)] = block @ q
            k = min(k, n)
            best = np.argpartition(-scores, k - 1)[:k]
            ranked = sorted((-float(scores[i]), self._ids[i]) for i in best)
        return [(image_id, round(-negated, 6)) for negated, image_id in ranked]
