"""How long `imgest fsck` and `imgest gc` take over a corpus of N images plus orphans.

Usage: .venv/bin/python bench/maintenance.py [--images 5000] [--orphans 1000]
       [--catalog postgresql://...] (default: a temporary SQLite file); blobs go to a
temporary local directory. Prints one line per job: seconds and blobs per second.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from imgest.catalog.records import ImageRecord, Label, PredictionRecord, RenditionRecord
from imgest.catalog.repo import Catalog
from imgest.jobs import fsck, gc
from imgest.storage.local import LocalStore
from imgest.storage.paths import original_path, rendition_path

ORIGINAL_BYTES = 20_000
RENDITION_BYTES = 5_000


def record(data: bytes, rendition_bytes: int) -> ImageRecord:
    sha = hashlib.sha256(data).hexdigest()
    now = datetime.now(UTC)
    return ImageRecord(
        id=sha,
        format="jpeg",
        content_type="image/jpeg",
        width=640,
        height=480,
        frames=1,
        bytes=len(data),
        filename="bench.jpg",
        original_path=original_path(sha),
        created_at=now,
        renditions=(
            RenditionRecord(
                "default",
                "v1",
                rendition_path("default", "v1", sha, "jpg"),
                224,
                224,
                "image/jpeg",
                rendition_bytes,
            ),
        ),
        predictions=(
            PredictionRecord("m", "v", "default", "v1", (Label("tabby", 281, 0.9),), now),
        ),
    )


async def main(images: int, orphans: int, catalog_url: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="imgest-bench-") as tmp:
        url = catalog_url or f"sqlite:///{Path(tmp) / 'catalog.db'}"
        catalog = Catalog.open(url)
        store = LocalStore(Path(tmp) / "blobs")
        started = time.perf_counter()
        await fill_corpus(store, catalog, images, orphans)
        print(
            f"filled {images} images + {orphans} orphans in {time.perf_counter() - started:.1f} s"
        )
        blobs = 2 * (images + orphans)
        later = datetime.now(UTC) + timedelta(hours=2)
        for name, job in [
            ("fsck", lambda: fsck.run(store, catalog)),
            ("fsck --deep", lambda: fsck.run(store, catalog, deep=True)),
            ("gc --dry-run", lambda: gc.run(store, catalog, dry_run=True, now=later)),
            ("gc", lambda: gc.run(store, catalog, now=later)),
        ]:
            started = time.perf_counter()
            report = await job()
            took = time.perf_counter() - started
            checked = blobs if name.startswith("gc") else 2 * images
            print(f"{name:14} {took:7.2f} s  {checked / took:9.0f} blobs/s  {report.as_dict()}")
        await store.close()
        catalog.close()


async def fill_corpus(store: LocalStore, catalog: Catalog, images: int, orphans: int) -> None:
    """N images with blobs and rows, and orphans (blobs only)."""
    rendition = os.urandom(RENDITION_BYTES)
    for n in range(images + orphans):
        data = os.urandom(ORIGINAL_BYTES)
        rec = record(data, RENDITION_BYTES)
        await store.put(rec.original_path, data)
        await store.put(rec.renditions[0].path, rendition)
        if n < images:
            await anyio.to_thread.run_sync(catalog.add_image, rec)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--orphans", type=int, default=1000)
    parser.add_argument("--catalog", default=None, help="catalog URL (default: temp SQLite)")
    args = parser.parse_args()
    anyio.run(main, args.images, args.orphans, args.catalog)
