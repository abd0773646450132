"""How the ANN library was chosen: usearch, faiss-cpu and hnswlib on one clustered set.

Usage: python bench/ann_choice.py N LIBRARY   (LIBRARY: usearch, faiss, hnswlib; one per run,
pinned with taskset -c 0; faiss-cpu and hnswlib are not dependencies of imgest: pip install
them into a scratch venv). Not part of `make bench`: it was run once, and
docs/similarity-index.md keeps the numbers. Every library gets HNSW with M=16,
ef_construction=128, ef_search=64 and one thread; N clustered 1280-d vectors (64-d latent
clusters plus isotropic noise), 200 queries, recall@10 against exact.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np


def main() -> None:
    n, lib, d = int(sys.argv[1]), sys.argv[2], 1280
    rng = np.random.default_rng(0)
    project = rng.standard_normal((64, d)).astype(np.float32) / 8
    centres = rng.standard_normal((max(n // 200, 10), 64)).astype(np.float32)

    def gen(m: int, rng: np.random.Generator) -> Any:
        c = rng.integers(0, len(centres), m)
        z = centres[c] + 0.6 * rng.standard_normal((m, 64)).astype(np.float32)
        x = z @ project + 0.3 * rng.standard_normal((m, d)).astype(np.float32) / np.sqrt(d) * 8
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    data, queries = gen(n, rng), gen(200, np.random.default_rng(1))
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    query: Callable[[Any, int], Any]
    if lib == "usearch":
        from usearch.index import Index

        index = Index(ndim=d, metric="ip", dtype="f16", connectivity=16, expansion_add=128)
        index.add(np.arange(n), data, threads=1)
        index.expansion_search = 64  # type: ignore[misc]

        def query(v: Any, k: int) -> Any:
            return index.search(v, k, threads=1).keys

        size = len(index.save() or b"")
    elif lib == "faiss":
        import faiss  # type: ignore[import-not-found]

        faiss.omp_set_num_threads(1)
        flat = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
        flat.hnsw.efConstruction = 128
        flat.add(data)
        flat.hnsw.efSearch = 64

        def query(v: Any, k: int) -> Any:
            return flat.search(v[None], k)[1][0]

        size = len(faiss.serialize_index(flat))
    else:
        import hnswlib  # type: ignore[import-not-found]

        graph = hnswlib.Index(space="ip", dim=d)
        graph.init_index(max_elements=n, ef_construction=128, M=16)
        graph.set_num_threads(1)
        graph.add_items(data, np.arange(n))
        graph.set_ef(64)

        def query(v: Any, k: int) -> Any:
            return graph.knn_query(v[None], k)[0][0]

        with tempfile.TemporaryDirectory() as tmp:
            graph.save_index(f"{tmp}/index")
            size = os.path.getsize(f"{tmp}/index")
    build = time.perf_counter() - started
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1e3
    times, recall = [], []
    for q, true in zip(queries, truth, strict=True):
        started = time.perf_counter()
        found = query(q, 10)
        times.append(time.perf_counter() - started)
        recall.append(len(set(np.asarray(found).tolist()) & set(true.tolist())) / 10)
    print(
        f"{lib} n={n} build={build:.1f}s p50={np.median(times) * 1e3:.2f}ms "
        f"p99={np.quantile(times, 0.99) * 1e3:.2f}ms recall@10={np.mean(recall):.3f} "
        f"saved={size / 1e6:.0f}MB peak_rss+={rss:.0f}MB"
    )


if __name__ == "__main__":
    main()
