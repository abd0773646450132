"""`imgest index rebuild`: build the ANN index of one model version from the catalog's embeddings.

Reads the embeddings in batches (`Batches`: ids, L2-normalised float32 rows and the catalog's
sequence number, which the pointer records so replicas catch up from it), adds them to an
`AnnIndex` off the event loop, stores the build and points `latest.json` at it
(`imgest.similarity.persist`), then deletes builds older than the previous one. Memory is the
index itself (float16 vectors and the graph: about 2.7 KB per 1280-d vector) plus one batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import anyio.to_thread
import numpy as np
import numpy.typing as npt

from imgest.catalog.repo import Catalog
from imgest.errors import JobError
from imgest.similarity import persist
from imgest.similarity.ann import AnnIndex
from imgest.similarity.vectors import from_bytes
from imgest.storage.base import BlobStore

log = logging.getLogger(__name__)

# (ids, L2-normalised rows, the highest catalog sequence number in them: 0 if none)
Batch = tuple[Sequence[str], npt.NDArray[np.float32], int]
Batches = Callable[[], Iterator[Batch]]
BATCH = 4096


@dataclass
class IndexReport:
    """What a rebuild did."""

    model: str
    version: str
    vectors: int = 0
    path: str = ""
    bytes: int = 0
    build_s: float = 0.0
    pruned: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """For --json."""
        return asdict(self)


def catalog_embeddings(catalog: Catalog, model_version: str, batch: int = BATCH) -> Batches:
    """The catalog's embeddings by one model version, `batch` rows at a time, oldest first."""

    def batches() -> Iterator[Batch]:
        seen = 0
        while page := catalog.embeddings_since(model_version, seen, limit=batch):
            seen = page[-1].seq
            vectors = np.stack([from_bytes(e.vector, e.dim) for e in page])
            yield [e.image_id for e in page], vectors, seen

    return batches


def build(batches: Batches, *, threads: int = 0) -> tuple[AnnIndex, int] | None:
    """An AnnIndex of every batch and the highest sequence number in it (blocking); None when
    there are no vectors."""
    index: AnnIndex | None = None
    seq = 0
    for ids, vectors, last in batches():
        if len(ids) == 0:
            continue
        if index is None:
            index = AnnIndex(vectors.shape[1], threads=threads)
        index.add(ids, vectors)
        seq = max(seq, last)
    if index is None:
        return None
    index.threads = 1  # what a query uses, once built with every core
    return index, seq


async def rebuild(
    store: BlobStore,
    model: str,
    version: str,
    batches: Batches,
    *,
    threads: int = 0,
) -> IndexReport:
    """Build from `batches`, store and publish the build, prune all but it and the one before."""
    report = IndexReport(model=model, version=version)
    started = time.perf_counter()
    built = await anyio.to_thread.run_sync(lambda: build(batches, threads=threads))
    report.build_s = round(time.perf_counter() - started, 3)
    if built is None:
        raise JobError(f"no embeddings of {model}@{version[:12]} to index")
    index, seq = built
    previous = await persist.latest(store, model, version)
    pointer = await persist.save(store, model, version, index, seq=seq)
    report.vectors, report.path = pointer.count, pointer.path
    keep = [pointer.path] + ([previous.path] if previous is not None else [])
    report.pruned = await persist.prune(store, model, version, keep)
    meta = await store.head(pointer.path)
    report.bytes = meta.size
    log.info("index rebuild: %s", report.as_dict())
    return report
