"""Load a running imgest server with distinct 12 MP JPEG uploads; print rate and latency.

Usage (loopback only; the server is started separately, e.g. `make run`):
    .venv/bin/python bench/http_load.py --url http://127.0.0.1:8000 --count 120 --concurrency 8

Each upload is the 12 MP photo of bench/normalize.py with a unique trailer after its EOI
marker, so every request is a new image (no dedupe) with the same decode cost. A first,
ad-hoc tool: issue 7 folds HTTP ingest into `make bench` with same-run baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import normalize

LOOPBACK = ("127.0.0.1", "localhost", "::1")


async def load(url: str, count: int, concurrency: int) -> dict[str, float]:
    """Send `count` uploads, `concurrency` at a time; return rate and latency percentiles."""
    base = normalize.photo()
    stamp = time.time_ns()
    payloads = [base + f"imgest-bench-{stamp}-{i}".encode() for i in range(count)]
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one(i: int) -> None:
            async with gate:
                started = time.perf_counter()
                r = await client.post(
                    f"{url}/v1/images",
                    files=[("file", (f"{i}.jpg", payloads[i], "image/jpeg"))],
                )
                latencies.append(time.perf_counter() - started)
                if r.status_code != 201:
                    raise SystemExit(f"upload {i}: HTTP {r.status_code}: {r.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "uploads_per_s": count / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in LOOPBACK:
        raise SystemExit("bench/http_load.py only targets a server on loopback")
    result = asyncio.run(load(args.url.rstrip("/"), args.count, args.concurrency))
    print(
        f"{args.count} uploads at concurrency {args.concurrency}: "
        f"{result['uploads_per_s']:.1f}/s, p50 {result['p50_ms']:.0f} ms, "
        f"p99 {result['p99_ms']:.0f} ms"
    )


if __name__ == "__main__":
    main()
