"""Soak: thousands of small uploads against a fresh `imgest serve`; its RSS must not grow.

Usage (loopback only; starts and stops its own server in a temporary folder):
    .venv/bin/python bench/soak.py --count 5000 --concurrency 8 --max-growth-mb 25
RSS is read from /proc after a warm-up (caches, arenas and the model's buffers settle), then
every second; exits 1 if the final RSS exceeds the post-warm-up RSS by more than
--max-growth-mb, or if any upload failed. Bounded by --count and --max-duration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.load import rss_mb, run_load, small_payloads  # noqa: E402
from tests.services.imgest_server import Server  # noqa: E402


async def sample_rss(pid: int, samples: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """Append (seconds, RSS MB) about once a second until `stop`."""
    started = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - started, rss_mb(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def soak(args: argparse.Namespace, server: Server) -> int:
    assert server.proc is not None
    pid = server.proc.pid
    payload = small_payloads("soak")
    warm = await run_load(server.base, payload, concurrency=args.concurrency, count=args.warmup)
    start_rss = rss_mb(pid)
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pid, samples, stop))
    main = await run_load(
        server.base,
        lambda i: payload(args.warmup + i),
        concurrency=args.concurrency,
        count=args.count,
        duration=args.max_duration,
    )
    stop.set()
    await sampler
    end_rss, peak = rss_mb(pid), rss_mb(pid, "VmHWM")
    growth = end_rss - start_rss
    quarters = [samples[len(samples) * k // 4][1] for k in range(4)] if samples else []
    print(f"soak warm-up: {warm.summary()}")
    print(f"soak: {main.summary()}")
    print(
        f"soak RSS: after warm-up {start_rss:.1f} MB, end {end_rss:.1f} MB "
        f"(growth {growth:+.1f} MB over {main.ok} uploads), peak {peak:.1f} MB; "
        f"at 0/25/50/75% of the run: {', '.join(f'{q:.1f}' for q in quarters)} MB"
    )
    failed = False
    for error in (warm.errors + main.errors)[:10]:
        print("  " + error)
        failed = True
    if growth > args.max_growth_mb:
        print(f"FAIL: RSS grew by {growth:.1f} MB (allowed {args.max_growth_mb} MB)")
        failed = True
    if main.ok < args.count:
        print(f"note: stopped by --max-duration after {main.ok} of {args.count} uploads")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="uploads after the warm-up")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--max-growth-mb", type=float, default=25.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgest-soak-") as tmp:
        server = Server(Path(tmp))
        server.start()
        try:
            return asyncio.run(soak(args, server))
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
