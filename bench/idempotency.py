"""What an Idempotency-Key costs per upload: small uploads with and without a key, interleaved.

Usage (loopback only; the server is started separately, e.g. `make run`):
    .venv/bin/python bench/idempotency.py --url http://127.0.0.1:8000 --count 200 --rounds 3

Each upload is tests/data/cat.jpg with a unique trailer after its EOI marker (a new image
every time, decoded like the original), so a keyed upload pays for claiming and completing its
key (two catalog writes) on top of the same ingest work. Rounds alternate keyed and plain runs
so that a change in machine load hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx

LOOPBACK = ("127.0.0.1", "localhost", "::1")
CAT = Path(__file__).resolve().parent.parent / "tests" / "data" / "cat.jpg"


async def run(url: str, count: int, concurrency: int, keyed: bool) -> dict[str, float]:
    """`count` new uploads, `concurrency` at a time; uploads/s and median latency."""
    base = CAT.read_bytes()
    stamp = time.time_ns()
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        timeout=120, limits=httpx.Limits(max_connections=concurrency)
    ) as client:

        async def one(i: int) -> None:
            data = base + f"imgest-bench-{stamp}-{keyed}-{i}".encode()
            headers = {"Idempotency-Key": str(uuid.uuid4())} if keyed else {}
            async with gate:
                started = time.perf_counter()
                r = await client.post(
                    f"{url}/v1/images", files=[("file", ("c.jpg", data))], headers=headers
                )
                latencies.append(time.perf_counter() - started)
            if r.status_code != 201:
                raise SystemExit(f"upload {i}: HTTP {r.status_code}: {r.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - started
    return {"uploads_per_s": count / elapsed, "p50_ms": 1000 * statistics.median(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in LOOPBACK:
        raise SystemExit("bench/idempotency.py only loads a server on loopback")
    for rnd in range(args.rounds):
        for keyed in (False, True):
            result = asyncio.run(run(args.url, args.count, args.concurrency, keyed))
            print(
                f"round {rnd + 1} {'with key   ' if keyed else 'without key'}: "
                f"{result['uploads_per_s']:.1f} uploads/s, p50 {result['p50_ms']:.0f} ms"
            )


if __name__ == "__main__":
    main()
