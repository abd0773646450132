"""Built ANN indexes in the blob store, the pointer to the latest, and the index replicas search.

Layout: `indexes/<model>/<version>/<sha256 of the saved index>` holds one built index (written
once, through `put_once`, like every content-addressed blob) and `indexes/<model>/<version>/
latest.json` points at the newest: its path, hash, vector count and build time. The pointer is a
blob rather than a catalog row so that publishing an index is one storage write and no storage
call ever happens inside a catalog transaction; two rebuilds racing both write a complete,
valid index and the last pointer wins. Each replica loads the latest (`load_latest`, checking
the hash) and keeps the vectors embedded since in an exact index beside it (`LiveIndex`), so
every replica answers the same without rebuilding. gc walks only `originals/` and
`renditions/` (`imgest.jobs.gc`), so it never touches `indexes/`; the rebuild job prunes old
builds itself, keeping the previous one for a replica that read the old pointer a moment ago.

Below `ann_min_vectors` embeddings (a setting, measured in docs/similarity-index.md) exact search is
as fast as the graph and needs no build: `wants_ann` is that one rule.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from imgest.similarity.ann import AnnIndex
from imgest.similarity.index import VectorIndex
from imgest.storage.base import BlobNotFoundError, BlobStore, StoreError
from imgest.storage.once import put_once, storage_errors, unavailable

log = logging.getLogger(__name__)

INDEXES_PREFIX = "indexes/"
POINTER = "latest.json"


def index_dir(model: str, version: str) -> str:
    """`indexes/<model>/<version>/`, where every build of that model version lives."""
    for part in (model, version):
        if not part or "/" in part or part in (".", ".."):
            raise ValueError(f"not a model name or version: {part!r}")
    return f"{INDEXES_PREFIX}{model}/{version}/"


def wants_ann(count: int, min_vectors: int) -> bool:
    """Whether `count` embeddings are enough for the ANN index to beat exact search."""
    return count >= min_vectors


@dataclass(frozen=True)
class Pointer:
    """What `latest.json` says about the newest build."""

    path: str
    sha256: str
    count: int
    ndim: int
    built_at: str  # ISO 8601, UTC
    seq: int = 0  # the highest embeddings.id in the build: replicas read the rows after it

    def to_json(self) -> bytes:
        """The pointer blob's bytes."""
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Pointer:
        """ValueError when `data` is not a pointer."""
        try:
            raw = json.loads(data)
            return cls(
                path=str(raw["path"]),
                sha256=str(raw["sha256"]),
                count=int(raw["count"]),
                ndim=int(raw["ndim"]),
                built_at=str(raw["built_at"]),
                seq=int(raw.get("seq", 0)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"bad index pointer: {exc}") from None


async def save(
    store: BlobStore, model: str, version: str, index: AnnIndex, *, seq: int = 0
) -> Pointer:
    """Store `index` content-addressed and point `latest.json` at it (`seq`: the highest
    catalog sequence number of the embeddings in it)."""
    data = index.to_bytes()
    digest = hashlib.sha256(data).hexdigest()
    folder = index_dir(model, version)
    pointer = Pointer(
        path=folder + digest,
        sha256=digest,
        count=len(index),
        ndim=index.ndim,
        built_at=datetime.now(UTC).isoformat(),
        seq=seq,
    )
    await put_once(store, pointer.path, data)
    with storage_errors():
        await store.put(folder + POINTER, pointer.to_json(), mode="overwrite")
    return pointer


async def latest(store: BlobStore, model: str, version: str) -> Pointer | None:
    """The pointer to the newest build, or None when there is none (or it is unreadable)."""
    path = index_dir(model, version) + POINTER
    data = await _read(store, path)
    if data is None:
        return None
    try:
        return Pointer.from_json(data)
    except ValueError as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


async def load_latest(
    store: BlobStore, model: str, version: str, *, threads: int = 1
) -> tuple[Pointer, AnnIndex] | None:
    """The newest build and its pointer; None when there is none or it fails its hash or
    format check (the caller searches exact, and the next rebuild replaces it)."""
    pointer = await latest(store, model, version)
    if pointer is None:
        return None
    data = await _read(store, pointer.path)
    if data is None:
        log.warning("index %s named by the pointer is gone", pointer.path)
        return None
    if hashlib.sha256(data).hexdigest() != pointer.sha256:
        log.warning("index %s does not match its hash; ignoring it", pointer.path)
        return None
    try:
        index = AnnIndex.from_bytes(data, threads=threads)
    except ValueError as exc:
        log.warning("index %s cannot be read: %s", pointer.path, exc)
        return None
    return pointer, index


async def _read(store: BlobStore, path: str) -> bytes | None:
    """The blob's bytes, None when there is none; StorageUnavailable when storage fails."""
    try:
        return await (await store.get(path)).read()
    except BlobNotFoundError:
        return None
    except StoreError as exc:
        raise unavailable(exc) from exc


async def prune(store: BlobStore, model: str, version: str, keep: Sequence[str]) -> list[str]:
    """Delete the builds of this model version other than the paths in `keep`."""
    folder = index_dir(model, version)
    removed = []
    with storage_errors():
        paths = [meta.path async for meta in store.list(folder)]
    for path in paths:
        if path in keep or path == folder + POINTER:
            continue
        try:
            await store.delete(path)
        except BlobNotFoundError:
            continue
        except StoreError as exc:
            raise unavailable(exc) from exc
        removed.append(path)
    return removed


class LiveIndex:
    """A loaded ANN build plus an exact index of what was embedded since: one `VectorIndex`.

    Adds go to `recent` (exact, so a fresh upload is found at once); removes go to both. A
    search asks both and merges by cosine.
    """

    def __init__(self, base: AnnIndex | None, recent: VectorIndex) -> None:
        self.base = base
        self.recent = recent

    def __len__(self) -> int:
        return (len(self.base) if self.base is not None else 0) + len(self.recent)

    def add(self, ids: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        """Add to the exact part (an id in the build is moved there)."""
        if self.base is not None:
            self.base.remove(ids)
        self.recent.add(ids, vectors)

    def remove(self, ids: Sequence[str]) -> None:
        """Remove from both parts."""
        if self.base is not None:
            self.base.remove(ids)
        self.recent.remove(ids)

    def search(self, query: npt.NDArray[np.float32], k: int) -> list[tuple[str, float]]:
        """The best `k` of both parts, best first."""
        found = self.recent.search(query, k)
        if self.base is not None:
            found = found + self.base.search(query, k)
        best: dict[str, float] = {}
        for image_id, score in found:
            best[image_id] = max(score, best.get(image_id, score))
        return sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]
