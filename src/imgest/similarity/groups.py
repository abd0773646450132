"""Near-duplicate groups: connected components of the pairs of images whose embeddings are at
least `threshold` similar (cosine), each named by its smallest image id.

Exact: every pair is compared, a block of rows against the rows after it, in float32 from the
catalog's float16 vectors (n^2 d multiply-adds: about a minute for 100k images on one core).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from imgest.catalog.embeddings import StoredEmbedding
from imgest.similarity.vectors import from_bytes

BLOCK = 2048
PAGE = 10_000


class EmbeddingSource(Protocol):
    """The catalog query groups need (Catalog implements it)."""

    def embeddings_since(
        self, model_version: str, after: int = 0, *, limit: int = 10_000
    ) -> list[StoredEmbedding]: ...


def load_embeddings(
    catalog: EmbeddingSource, model_version: str
) -> tuple[list[str], npt.NDArray[np.float32]]:
    """Every image id with an embedding by `model_version`, and those embeddings (rows)."""
    ids: list[str] = []
    rows: list[npt.NDArray[np.float32]] = []
    after = 0
    while page := catalog.embeddings_since(model_version, after, limit=PAGE):
        after = page[-1].seq
        for e in page:
            ids.append(e.image_id)
            rows.append(from_bytes(e.vector, e.dim))
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    return ids, np.stack(rows)


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


def near_duplicate_groups(
    catalog: EmbeddingSource, model: str, model_version: str, threshold: float
) -> dict[str, str]:
    """Every image with an embedding by `model`@`model_version` -> its group id: the smallest
    image id of its connected component of pairs with cosine >= `threshold`. An image with no
    near-duplicate is its own group."""
    del model  # the version (a sha256) names the model; the name is for the caller's logs
    ids, vectors = load_embeddings(catalog, model_version)
    return components(ids, vectors, threshold)
