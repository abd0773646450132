"""How long one gallery page (24 images) takes to list, by sort and filter, over a large catalog.

Usage: .venv/bin/python bench/gallery.py [--images 100000] [--quick] [--catalog URL]
(default: a temporary SQLite file). Two predictions per image (random scores, half of the
top-1 classes naming the ground truth of the third of the images that have one), inserted in
bulk. Each case lists its first 3 pages (keyset cursors) and reports the median; the
confidence sorts are measured twice, with the predictions' score index (migration 0005) and
after dropping it (the same query then sorts every prediction), so the ratio comes from one
run. (Before this index, sorting by a per-image subquery cost 1.0 to 2.2 s a page at 100,000
images on the shared 2-core development machine.)
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from imgest.catalog.models import ImageRow, PredictionRow
from imgest.catalog.repo import Catalog, ImageFilter, Sort

PAGE = 24
INDEX = "ix_predictions_top1_score_image_id"
TARGET_MS = 100.0  # a page sorted by confidence, whatever the corpus size
CASES: list[tuple[str, Sort, ImageFilter | None]] = [
    ("newest", "newest", None),
    ("most confident", "most_confident", None),
    ("least confident", "least_confident", None),
    ("newest, confidence <= 0.1", "newest", ImageFilter(max_confidence=0.1)),
    ("newest, disagrees", "newest", ImageFilter(disagrees=True)),
    ("most confident, disagrees", "most_confident", ImageFilter(disagrees=True)),
]


def fill(catalog: Catalog, n: int) -> None:
    """n images, two predictions each, in bulk (no blobs: listing reads the catalog only)."""
    rnd = random.Random(1)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for start in range(0, n, 20_000):
        images, predictions = [], []
        for i in range(start, min(n, start + 20_000)):
            image_id = hashlib.sha256(str(i).encode()).hexdigest()
            images.append(
                {
                    "id": image_id,
                    "format": "jpeg",
                    "content_type": "image/jpeg",
                    "width": 640,
                    "height": 480,
                    "frames": 1,
                    "bytes": 1000,
                    "filename": f"{i}.jpg",
                    "original_path": "originals/x",
                    "fields": {},
                    "created_at": t0 + timedelta(seconds=i),
                    "label": "tabby" if i % 3 == 0 else None,
                }
            )
            for version in ("v1", "v2"):
                score = rnd.random()
                top1 = "tabby, tabby cat" if rnd.random() < 0.5 else "tiger cat"
                predictions.append(
                    {
                        "image_id": image_id,
                        "model": "m",
                        "model_version": version,
                        "pipeline": "default",
                        "pipeline_version": "p1",
                        "top": [{"label": top1, "index": 0, "score": score}],
                        "top1_label": top1,
                        "top1_score": score,
                        "created_at": t0,
                    }
                )
        with catalog.engine.begin() as conn:
            conn.execute(insert(ImageRow), images)
            conn.execute(insert(PredictionRow), predictions)


def page_ms(catalog: Catalog, sort: Sort, where: ImageFilter | None, pages: int = 3) -> float:
    """Median milliseconds of the first `pages` pages."""
    times = []
    cursor = None
    for _ in range(pages):
        started = time.perf_counter()
        page = catalog.list_images(limit=PAGE, cursor=cursor, where=where, sort=sort)
        times.append((time.perf_counter() - started) * 1000)
        cursor = page.next_cursor
        if cursor is None:
            break
    return statistics.median(times)


def measure(images: int, url: str | None = None) -> dict[str, Any]:
    """Every case with the index; the confidence sorts again without it."""
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog.open(url or f"sqlite:///{Path(tmp) / 'catalog.db'}")
        try:
            started = time.perf_counter()
            fill(catalog, images)
            filled = time.perf_counter() - started
            rows = [(name, page_ms(catalog, sort, where)) for name, sort, where in CASES]
            with catalog.engine.begin() as conn:
                conn.execute(text(f"DROP INDEX {INDEX}"))
            before = [
                (name, page_ms(catalog, sort, where))
                for name, sort, where in CASES
                if sort != "newest"
            ]
        finally:
            catalog.close()
    return {"images": images, "fill_s": filled, "rows": rows, "without_index": before}


def run(repeats: int = 15, images: int = 100_000) -> dict[str, Any]:
    """The bench/run.py entry: a result with a title, targets and markdown lines."""
    del repeats  # each case is timed over its first pages; the corpus is the expensive part
    m = measure(images)
    slowest = max(ms for name, ms in m["rows"] if "confident" in name)
    lines = [
        f"{m['images']:,} images, two predictions each (SQLite, filled in {m['fill_s']:.0f} s); "
        f"median of the first 3 pages of {PAGE}. "
        f"Command: `.venv/bin/python bench/gallery.py --images {m['images']}`.",
        "",
        "| case | ms per page | without the score index of migration 0005 |",
        "|---|---:|---:|",
    ]
    without = dict(m["without_index"])
    for name, ms in m["rows"]:
        old = f"{without[name]:.1f}" if name in without else ""
        lines.append(f"| {name} | {ms:.1f} | {old} |")
    return {
        "title": "Gallery pages (sort and filter by confidence, disagreement)",
        "targets": [
            {
                "what": f"gallery page sorted by confidence, {m['images']:,} images",
                "target": f"<= {TARGET_MS:.0f} ms",
                "value": f"{slowest:.1f} ms",
                "met": slowest <= TARGET_MS,
                "note": "an index walk over predictions by (top1_score, image_id)",
            }
        ],
        "lines": [*lines, ""],
        "measured": m,
    }


def print_table(result: dict[str, Any]) -> None:
    print("\n".join(result["lines"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20,000 images")
    parser.add_argument("--catalog", help="a catalog URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    images = 20_000 if args.quick else args.images
    if args.catalog:
        m = measure(images, args.catalog)
        print(m)
        return
    print_table(run(images=images))


if __name__ == "__main__":
    main()
