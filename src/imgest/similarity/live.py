"""The server's similarity index: the active model's embeddings, kept current across replicas.

One `ExactIndex` of the embeddings by the model version uploads are scored with, loaded from
the catalog on first use. This process adds what it ingests and drops what it deletes at once;
before each search it reads the embeddings other replicas recorded since the last one it saw
(one indexed query: `embeddings.id > last`), and it checks the ids a search finds against the
catalog, so an image another replica deleted is never answered (and leaves the index then).
A model version change (`imgest models activate`) loads the new version's index.
Given the blob store, it starts from the latest ANN build of that version (`imgest index
rebuild`, imgest.similarity.persist) when the build holds at least `ann_min_vectors`, and
searches exactly only what was embedded after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import anyio.to_thread
import numpy as np
import numpy.typing as npt

from imgest.catalog.repo import Catalog
from imgest.errors import StorageUnavailable
from imgest.scoring.model import Model
from imgest.similarity.ann import AnnIndex
from imgest.similarity.index import ExactIndex, VectorIndex
from imgest.similarity.persist import LiveIndex, Pointer, load_latest, wants_ann
from imgest.similarity.vectors import from_bytes
from imgest.storage.base import BlobStore

log = logging.getLogger(__name__)

PAGE = 10_000
NearMode = Literal["flag", "reject", "off"]


@dataclass(frozen=True)
class NearDuplicatePolicy:
    """What uploads do about near-duplicates (settings near_duplicates, near_duplicate_*)."""

    mode: NearMode = "flag"
    threshold: float = 0.75  # settings.near_duplicate_threshold's default
    limit: int = 5


@dataclass(frozen=True)
class Match:
    """A stored image similar to a query, with its cosine similarity."""

    id: str
    score: float


class VersionIndex:
    """The index of one model version's embeddings (blocking methods: call from a thread)."""

    def __init__(self, catalog: Catalog, model_version: str, dim: int) -> None:
        self.catalog = catalog
        self.model_version = model_version
        # float32 rows: searched on every upload, and float16 rows cost a conversion per
        # search (see imgest.similarity.index); 5 KB per 1280-d image.
        self.index: VectorIndex = ExactIndex(dim, dtype=np.float32)
        self._seen = 0  # the highest embeddings.id read from the catalog

    def start_from(self, pointer: Pointer, build: AnnIndex) -> None:
        """Search `build` (stored by `imgest index rebuild`) plus, exactly, what was embedded
        after it: catch_up then reads only the rows past the build's sequence number."""
        self.index = LiveIndex(build, ExactIndex(build.ndim))
        self._seen = pointer.seq

    def catch_up(self) -> int:
        """Add the embeddings recorded since the last call (by any replica); how many."""
        added = 0
        while page := self.catalog.embeddings_since(self.model_version, self._seen, limit=PAGE):
            self._seen = page[-1].seq
            vectors = np.stack([from_bytes(e.vector, e.dim) for e in page])
            self.index.add([e.image_id for e in page], vectors)
            added += len(page)
        return added

    def search(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        *,
        threshold: float = -1.0,
        exclude: Sequence[str] = (),
    ) -> list[Match]:
        """Up to `k` stored images most similar to `query` with cosine >= `threshold`, best
        first, leaving out `exclude` and images deleted since they were indexed."""
        self.catch_up()
        want = k + len(exclude)
        found = [
            (i, s) for i, s in self.index.search(query, want) if s >= threshold and i not in exclude
        ]
        stored = self.catalog.stored_ids([i for i, _ in found])
        gone = [i for i, _ in found if i not in stored]
        if gone:
            self.index.remove(gone)
        return [Match(i, s) for i, s in found if i in stored][:k]


class SimilarImages:
    """Hands out the index of a model's version; async wrappers for the server."""

    def __init__(
        self, catalog: Catalog, store: BlobStore | None = None, ann_min_vectors: int = 0
    ) -> None:
        self.catalog = catalog
        self.store = store  # where `imgest index rebuild` stores builds; None: exact only
        self.ann_min_vectors = ann_min_vectors  # settings.ann_min_vectors
        self._current: VersionIndex | None = None
        self._lock = asyncio.Lock()

    async def index_for(self, model: Model) -> VersionIndex | None:
        """The index of `model`'s version (loaded on first use; one version at a time), or
        None when the model has no embedding output."""
        if model.embedding_dim is None:
            return None
        current = self._current
        if current is not None and current.model_version == model.version:
            return current
        async with self._lock:
            current = self._current
            if current is None or current.model_version != model.version:
                current = VersionIndex(self.catalog, model.version, model.embedding_dim)
                if self.store is not None:
                    try:
                        built = await load_latest(self.store, model.name, model.version)
                    except StorageUnavailable:  # a server still starts when storage hangs
                        log.warning(
                            "could not read the ANN index of %s from storage; searching "
                            "exactly until this process restarts",
                            model.version[:12],
                            exc_info=True,
                        )
                        built = None
                    if built is not None and wants_ann(built[0].count, self.ann_min_vectors):
                        current.start_from(*built)
                await anyio.to_thread.run_sync(current.catch_up)
                self._current = current
        return current

    async def search(
        self,
        model: Model,
        query: npt.NDArray[np.float32],
        k: int,
        *,
        threshold: float = -1.0,
        exclude: Sequence[str] = (),
    ) -> list[Match]:
        """The stored images most similar to `query` by `model`'s embeddings (see
        VersionIndex.search); empty when the model has no embedding output."""
        index = await self.index_for(model)
        if index is None:
            return []
        return await anyio.to_thread.run_sync(
            lambda: index.search(query, k, threshold=threshold, exclude=exclude)
        )

    def added(self, model: Model, image_id: str, vector: npt.NDArray[np.float32]) -> None:
        """This process recorded `image_id`'s embedding: searchable at once."""
        current = self._current
        if current is not None and current.model_version == model.version:
            current.index.add([image_id], vector[np.newaxis])

    def removed(self, image_id: str) -> None:
        """This process deleted `image_id`."""
        if self._current is not None:
            self._current.index.remove([image_id])
