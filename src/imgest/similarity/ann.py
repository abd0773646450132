"""The approximate vector index: usearch's HNSW graph behind the `VectorIndex` protocol.

Why usearch (2.x, Apache-2.0) rather than faiss-cpu or hnswlib, measured with
`bench/ann_choice.py` on 50,000 clustered 1280-d vectors, one thread each, HNSW with M=16,
ef_construction=128, ef_search=64 (docs/similarity-index.md has the table):

- query p50 and recall are a wash (0.40-0.54 ms, recall@10 1.000 for all three); build time
  too (faiss 62 s, usearch 73 s, hnswlib 116 s on a busy 2-core machine);
- usearch stores the vectors as float16 in the graph (`dtype="f16"`), halving memory and the
  saved size against faiss' `IndexHNSWFlat` and hnswlib (float32 only): 135 MB against 263 MB
  saved at 50k; at 1M x 1280 about 2.7 GB instead of 5.3 GB resident on every replica;
- it saves to and restores from a bytes buffer (`save()` / `Index.restore(buffer)`), which is
  what the blob store needs; hnswlib only saves to a file path;
- it removes keys (`remove`), takes the thread count per call (queries on one core), ships
  `py.typed` and manylinux wheels for CPython 3.11 x86_64, and is released every few weeks;
  hnswlib's last release (0.8.0) is from 2023, and faiss-cpu's wheels are a community build
  (the project itself ships conda packages) of ~30 MB.

Keys inside usearch are integers; the index keeps the mapping to image ids and saves it with the
graph: `to_bytes()` is a magic line, a JSON header (parameters, count), the keys as little-endian
uint64, the ids joined by newlines, then usearch's own buffer.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

# isort: off
# usearch's extension loaded before onnxruntime's makes the later `import onnxruntime` crash the
# process (a segfault in its pybind module; usearch 2.26.6, onnxruntime 1.32.0), and a process
# that searches may score too: onnxruntime goes first, through the one module that imports it
# (telemetry off). tests/similarity/test_ann.py::test_importing_the_index_first_keeps_onnxruntime
import imgest.scoring.model  # noqa: F401
from usearch.index import Index

# isort: on

MAGIC = b"imgest-ann-1\n"
_LEN = struct.Struct("<Q")


class AnnIndex:
    """Approximate cosine search over L2-normalised vectors (usearch HNSW, float16 storage)."""

    def __init__(
        self,
        ndim: int,
        *,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
        threads: int = 1,
    ) -> None:
        self.ndim = ndim
        self.threads = threads  # per call; 1 = a query uses one core
        self._index = Index(
            ndim=ndim,
            metric="ip",  # rows are normalised: inner product is the cosine
            dtype="f16",
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )
        self._ids: dict[int, str] = {}
        self._keys: dict[str, int] = {}
        self._next = 0
        self._lock = threading.RLock()  # searches and updates from several threads

    @property
    def params(self) -> dict[str, int]:
        """The graph's parameters (saved with it)."""
        return {
            "ndim": self.ndim,
            "connectivity": int(self._index.connectivity),
            "expansion_add": int(self._index.expansion_add),
            "expansion_search": int(self._index.expansion_search),
        }

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._keys

    def ids(self) -> list[str]:
        """Every id in the index."""
        return list(self._keys)

    def add(self, ids: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        """Add L2-normalised rows under `ids`; an id already present is replaced."""
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(ids) == 0:
            return
        if vectors.ndim != 2 or vectors.shape[1] != self.ndim:
            raise ValueError(f"vectors must be (n, {self.ndim}), got {vectors.shape}")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids in one add")
        for image_id in ids:
            if "\n" in image_id:
                raise ValueError(f"an id cannot hold a newline: {image_id!r}")
        with self._lock:
            self._add(ids, vectors)

    def _add(self, ids: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        self.remove([i for i in ids if i in self._keys])
        keys = np.arange(self._next, self._next + len(ids), dtype=np.uint64)
        self._index.add(keys, np.ascontiguousarray(vectors, dtype=np.float32), threads=self.threads)
        for key, image_id in zip(keys.tolist(), ids, strict=True):
            self._ids[key] = image_id
            self._keys[image_id] = key
        self._next += len(ids)

    def remove(self, ids: Sequence[str]) -> None:
        """Drop `ids` (those not present are ignored)."""
        with self._lock:
            keys = [self._keys.pop(i) for i in ids if i in self._keys]
            for key in keys:
                del self._ids[key]
            if keys:
                self._index.remove(np.asarray(keys, dtype=np.uint64))

    def search(self, query: npt.NDArray[np.float32], k: int) -> list[tuple[str, float]]:
        """The `k` nearest ids to one normalised query, as (id, cosine), best first."""
        with self._lock:
            if k <= 0 or not self._ids:
                return []
            found = self._index.search(
                np.ascontiguousarray(query, dtype=np.float32).reshape(-1),
                min(k, len(self._ids)),
                threads=self.threads,
            )
            pairs = zip(found.keys.tolist(), found.distances.tolist(), strict=True)
            # ip distance is 1 - dot, and the dot of normalised rows is the cosine
            return [(self._ids[int(key)], 1.0 - float(d)) for key, d in pairs if key in self._ids]

    # -- persistence -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The index, its parameters and its ids as one buffer (`from_bytes` reads it)."""
        with self._lock:
            return self._to_bytes()

    def _to_bytes(self) -> bytes:
        keys = np.fromiter(self._ids, dtype="<u8", count=len(self._ids))
        names = "\n".join(self._ids.values()).encode()
        header = json.dumps({**self.params, "count": len(self._ids), "next": self._next}).encode()
        saved = self._index.save()
        if saved is None:  # only when given a path
            raise RuntimeError("usearch saved nothing")
        graph = saved  # a bytearray: joined below without another copy
        parts = [header, keys.tobytes(), names, graph]
        framed = [MAGIC] + [c for p in parts for c in (_LEN.pack(len(p)), p)]
        return b"".join(framed)  # one copy of the graph, not one per concatenation

    @classmethod
    def from_bytes(cls, data: bytes, *, threads: int = 1) -> AnnIndex:
        """An index saved by `to_bytes`; ValueError if `data` is not one."""
        if not data.startswith(MAGIC):
            raise ValueError("not an imgest ANN index (bad magic)")
        view = memoryview(data)  # slices without copies: a 1M index is gigabytes
        parts, at = [], len(MAGIC)
        for _ in range(4):
            if at + _LEN.size > len(data):
                raise ValueError("truncated ANN index")
            (size,) = _LEN.unpack_from(data, at)
            at += _LEN.size
            if at + size > len(data):
                raise ValueError("truncated ANN index")
            parts.append(view[at : at + size])
            at += size
        header_raw, keys_raw, names_raw, graph = parts
        try:
            header = json.loads(bytes(header_raw))
            count, ndim = int(header["count"]), int(header["ndim"])
            keys = np.frombuffer(keys_raw, dtype="<u8")
            names = bytes(names_raw).decode().split("\n") if count else []
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"bad ANN index header: {exc}") from None
        if len(keys) != count or len(names) != count:
            raise ValueError("ANN index ids do not match its count")
        try:
            restored = Index.restore(graph)
        except Exception as exc:  # usearch raises RuntimeError and others on a bad buffer
            raise ValueError(f"bad ANN index graph: {exc}") from None
        if restored is None or restored.ndim != ndim or len(restored) != count:
            raise ValueError("ANN index graph does not match its header")
        index = cls(
            ndim,
            connectivity=int(header["connectivity"]),
            expansion_add=int(header["expansion_add"]),
            expansion_search=int(header["expansion_search"]),
            threads=threads,
        )
        index._index = restored
        # restore() keeps the graph, not the expansions; usearch's setters are declared in a
        # way mypy reads as read-only properties
        restored.expansion_search = int(header["expansion_search"])  # type: ignore[misc]
        restored.expansion_add = int(header["expansion_add"])  # type: ignore[misc]
        index._ids = dict(zip(keys.tolist(), names, strict=True))
        index._keys = {name: key for key, name in index._ids.items()}
        index._next = int(header["next"])
        return index
