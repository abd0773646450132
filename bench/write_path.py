"""Write path: what storing and recording one image costs (blob lease, puts, catalog record).

Times the write path of `imgest.storage.once` alone (no decode, no scoring): original + rendition
blobs of random bytes put into a local store, the row recorded in a SQLite catalog (WAL,
synchronous=FULL), one writer at a time and 8 at once (ingest's catalog writers). Run against an
older tree (PYTHONPATH=OLD/src) it times that tree's path (put, then HEAD each blob inside the
recording transaction), which is how the before/after of the lease protocol was measured.

Usage: .venv/bin/python bench/write_path.py [--quick] [--images N]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from imgest.catalog.records import ImageRecord, RenditionRecord  # noqa: E402
from imgest.catalog.repo import Catalog  # noqa: E402
from imgest.storage import once  # noqa: E402
from imgest.storage.local import LocalStore  # noqa: E402
from imgest.storage.paths import original_path, rendition_path  # noqa: E402

NAME = "write_path"
TITLE = "Write path: lease + blob puts + catalog record, per image (local store, SQLite)"
ORIGINAL_BYTES = 200_000
RENDITION_BYTES = 20_000
WRITERS = 8


def image(n: int) -> tuple[ImageRecord, dict[str, bytes]]:
    data = os.urandom(ORIGINAL_BYTES)
    sha = hashlib.sha256(data + n.to_bytes(4, "big")).hexdigest()
    rendition = rendition_path("default", "v1", sha, "jpg")
    record = ImageRecord(
        id=sha,
        format="jpeg",
        content_type="image/jpeg",
        width=4000,
        height=3000,
        frames=1,
        bytes=len(data),
        filename=f"{n}.jpg",
        original_path=original_path(sha),
        created_at=datetime.now(UTC),
        fields={},
        tags=(),
        renditions=(
            RenditionRecord("default", "v1", rendition, 224, 224, "image/jpeg", RENDITION_BYTES),
        ),
        predictions=(),
    )
    return record, {original_path(sha): data, rendition: os.urandom(RENDITION_BYTES)}


async def write(store: LocalStore, catalog: Catalog, record: ImageRecord, blobs: Any) -> None:
    if hasattr(once, "store_and_record"):  # the lease protocol
        await once.store_and_record(
            store, catalog, blobs, lambda lease: catalog.add_image(record, lease)
        )
        return
    # The path before it: put, then HEAD each blob inside the recording transaction.
    await asyncio.gather(*(once.put_once(store, p, d) for p, d in blobs.items()))
    restore = once.restore_missing  # type: ignore[attr-defined, unused-ignore]
    await anyio.to_thread.run_sync(
        catalog.add_image, record, lambda: anyio.from_thread.run(restore, store, blobs)
    )


async def measure(images: int, writers: int) -> tuple[list[float], float, float]:
    """Per-write seconds, the wall time and the CPU time (this process, all threads) of
    `images` writes, `writers` at once."""
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp) / "blobs")
        catalog = Catalog.open(f"sqlite:///{tmp}/catalog.db")
        work = [image(n) for n in range(images)]
        times: list[float] = []
        limiter = anyio.CapacityLimiter(writers)

        async def one(record: ImageRecord, blobs: Any) -> None:
            async with limiter:
                started = time.perf_counter()
                await write(store, catalog, record, blobs)
                times.append(time.perf_counter() - started)

        started, cpu = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as group:
            for record, blobs in work:
                group.start_soon(one, record, blobs)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        catalog.close()
        await store.close()
        return times, wall, cpu


def run(repeats: int = 1, images: int = 300) -> dict[str, Any]:
    """Time the write path with 1 and WRITERS writers; Markdown lines for the report."""
    protocol = "leases" if hasattr(once, "store_and_record") else "HEAD in txn"
    lines = [
        f"{images} images ({ORIGINAL_BYTES // 1000} kB original + {RENDITION_BYTES // 1000} kB "
        f"rendition each), best of {min(repeats, 3)}; protocol: {protocol}.",
        "",
        "| writers | p50 ms/write | p95 ms/write | CPU ms/write | writes/s |",
        "|---|---|---|---|---|",
    ]
    repeats = min(repeats, 3)  # make bench passes 15; three runs of a few seconds settle it
    rows = []
    for writers in (1, WRITERS):
        best: tuple[list[float], float, float] | None = None
        for _ in range(repeats):
            result = anyio.run(measure, images, writers)
            if best is None or result[1] < best[1]:
                best = result
        assert best is not None
        times, wall, cpu = best
        p50 = statistics.median(times) * 1000
        p95 = statistics.quantiles(times, n=20)[18] * 1000
        cpu_ms = cpu / images * 1000
        rows.append((writers, p50, p95, cpu_ms, images / wall))
        lines.append(f"| {writers} | {p50:.2f} | {p95:.2f} | {cpu_ms:.2f} | {images / wall:.0f} |")
    return {"name": NAME, "title": TITLE, "lines": [*lines, ""], "targets": [], "rows_": rows}


def print_table(result: dict[str, Any]) -> None:
    """Print the result as plain text."""
    print(result["title"])
    for line in result["lines"]:
        print("  " + line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 images, one repeat")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = 100, 1
    print_table(run(repeats=args.repeats, images=args.images))
