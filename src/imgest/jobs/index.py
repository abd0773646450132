"""`imgest index rebuild`: build the ANN index of one model version from the catalog's embeddings.

Reads the embeddings in batches (`Batches`: (ids, L2-normalised float32 rows)), adds them to an
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
import sqlalchemy as sa

from imgest.catalog.repo import Catalog
from imgest.errors import JobError
from imgest.similarity import persist
from imgest.similarity.ann import AnnIndex
from imgest.storage.base import BlobStore

log = logging.getLogger(__name__)

Batch = tuple[Sequence[str], npt.NDArray[np.float32]]
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


def catalog_embeddings(catalog: Catalog, model: str, version: str, batch: int = BATCH) -> Batches:
    """The catalog's embeddings of one model version, `batch` rows at a time, normalised.

    Reads the `embeddings` table (image_id, model, model_version, vector: float16 bytes) that
    the embeddings feature adds; JobError when the catalog has none.
    """

    def batches() -> Iterator[Batch]:
        with catalog.guarded():
            if not sa.inspect(catalog.engine).has_table("embeddings"):
                raise JobError(
                    "this catalog stores no embeddings: run `imgest rescore` with a model "
                    "that has an embedding output first"
                )
            table = sa.Table("embeddings", sa.MetaData(), autoload_with=catalog.engine)
            query = (
                sa.select(table.c.image_id, table.c.vector)
                .where(table.c.model == model, table.c.model_version == version)
                .order_by(table.c.image_id)
            )
            with catalog.engine.connect() as conn:
                result = conn.execution_options(stream_results=True).execute(query)
                for rows in result.partitions(batch):
                    ids = [str(r[0]) for r in rows]
                    stored = np.stack([np.frombuffer(r[1], dtype=np.float16) for r in rows])
                    vectors = stored.astype(np.float32)
                    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
                    yield ids, vectors

    return batches


def build(batches: Batches, *, threads: int = 0) -> AnnIndex | None:
    """An AnnIndex of every batch (blocking); None when there are no vectors."""
    index: AnnIndex | None = None
    for ids, vectors in batches():
        if len(ids) == 0:
            continue
        if index is None:
            index = AnnIndex(vectors.shape[1], threads=threads)
        index.add(ids, vectors)
    if index is not None:
        index.threads = 1  # what a query uses, once built with every core
    return index


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
    index = await anyio.to_thread.run_sync(lambda: build(batches, threads=threads))
    report.build_s = round(time.perf_counter() - started, 3)
    if index is None:
        raise JobError(f"no embeddings of {model}@{version[:12]} to index")
    previous = await persist.latest(store, model, version)
    pointer = await persist.save(store, model, version, index)
    report.vectors, report.path = pointer.count, pointer.path
    keep = [pointer.path] + ([previous.path] if previous is not None else [])
    report.pruned = await persist.prune(store, model, version, keep)
    meta = await store.head(pointer.path)
    report.bytes = meta.size
    log.info("index rebuild: %s", report.as_dict())
    return report
