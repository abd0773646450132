"""Prometheus metrics: what imgest counts and times, and the text exposition of them.

Each app owns a `Metrics` (its own registry), so several apps in one process (tests, embedding
programs) never mix their numbers. Several uvicorn worker processes: set
`PROMETHEUS_MULTIPROC_DIR` to an empty directory shared by the workers before they start;
`/metrics` then merges every worker's counters and histograms (prometheus-client's multiprocess
mode), while the live gauges (queue depth, in flight) describe the worker that answered.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Gauges", "Metrics", "method_label"]

# The only values of the `method` label: any other request method (HTTP lets a client invent
# one per request) is counted as "other", so clients cannot grow the label set.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"

# Seconds: from a cache hit (~1 ms) to a large HEIC decode or a slow store (~10 s).
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def method_label(method: str) -> str:
    """`method` if it is one of the standard methods imgest counts, else "other"."""
    return method if method in METHODS else OTHER_METHOD


@dataclass(frozen=True)
class Gauges:
    """Live values read at scrape time (no bookkeeping on the request path)."""

    active_uploads: Callable[[], int]
    queued_uploads: Callable[[], int]
    inflight_bytes: Callable[[], int]
    cpu_busy: Callable[[], int]
    cpu_waiting: Callable[[], int]
    scoring_queue: Callable[[], int]
    batch_sizes: Callable[[], Mapping[int, int]]


class _LiveCollector(Collector):
    """Turns `Gauges` into metric families when Prometheus scrapes."""

    def __init__(self, gauges: Callable[[], Gauges | None]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterable[Metric]:
        g = self._gauges()
        if g is None:  # not started yet (or already shut down)
            return
        for name, doc, read in (
            ("imgest_uploads_active", "Upload requests reading or processing.", g.active_uploads),
            ("imgest_uploads_queued", "Upload requests waiting for a slot.", g.queued_uploads),
            ("imgest_inflight_body_bytes", "Body bytes reserved by uploads.", g.inflight_bytes),
            ("imgest_cpu_busy", "Decode/render workers busy.", g.cpu_busy),
            ("imgest_cpu_waiting", "Images waiting for a decode/render worker.", g.cpu_waiting),
            ("imgest_scoring_queue_depth", "Images waiting to be scored.", g.scoring_queue),
        ):
            yield GaugeMetricFamily(name, doc, value=read())
        yield _batch_histogram(g.batch_sizes())


def _batch_histogram(sizes: Mapping[int, int]) -> HistogramMetricFamily:
    """The batcher's size counts as a cumulative histogram."""
    buckets = []
    for bound in BATCH_BUCKETS:
        buckets.append((str(float(bound)), sum(n for size, n in sizes.items() if size <= bound)))
    buckets.append(("+Inf", sum(sizes.values())))
    total = sum(size * n for size, n in sizes.items())
    return HistogramMetricFamily(
        "imgest_scoring_batch_size",
        "Images per scoring batch.",
        buckets=buckets,
        sum_value=total,
    )


class Metrics:
    """The counters and histograms of one app, with the registry they live in."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.gauges: Gauges | None = None
        r = self.registry
        # Every metric lives in this app's registry; every histogram times in _SECONDS.
        counter = partial(Counter, registry=r)
        histogram = partial(Histogram, buckets=_SECONDS, registry=r)
        self.requests = counter(
            "imgest_http_requests",
            "HTTP requests by method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or other), "
            "route template and status.",
            ["method", "route", "status"],
        )
        self.latency = histogram(
            "imgest_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
        )
        self.problems = counter(
            "imgest_problems",
            "Requests refused with a problem+json answer, by problem code.",
            ["code"],
        )
        self.files = counter(
            "imgest_upload_files",
            "Uploaded files by outcome (created, existing, rejected) and code (rejections).",
            ["status", "code"],
        )
        self.body_bytes = counter("imgest_upload_body_bytes", "Upload request body bytes received.")
        self.ingested_bytes = counter("imgest_ingested_bytes", "Bytes of originals newly stored.")
        self.render_seconds = histogram(
            "imgest_render_seconds",
            "Sniff, decode, normalize, render and encode time per image (CPU worker).",
        )
        self.score_seconds = histogram(
            "imgest_score_seconds",
            "Wait plus inference time per image in the micro-batcher.",
        )
        self.store_seconds = histogram(
            "imgest_store_seconds",
            "Time to store an image: blob lease, original and rendition writes, catalog record.",
        )
        r.register(_LiveCollector(lambda: self.gauges))

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (merged across workers if multiprocess).

        Blocking work (it walks every series, and reads files in multiprocess mode): async
        callers run it in a worker thread.
        """
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            merged.register(_LiveCollector(lambda: self.gauges))
            return generate_latest(merged)
        return generate_latest(self.registry)
