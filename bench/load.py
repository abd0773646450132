"""HTTP upload load on loopback: N concurrent clients for a duration or a count; rate, latency.

Usage (starts its own `imgest serve` in a temporary folder unless --url names one on loopback):
    .venv/bin/python bench/load.py --concurrency 32 --duration 180            # small photos
    .venv/bin/python bench/load.py --size 12mp --concurrency 8 --count 120    # 12 MP photos
Exits 1 if any request failed (a non-2xx answer or a transport error). Every upload is a new
image: a real photo with a unique trailer after its JPEG end marker (same decode cost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
SMALL_PHOTOS = ("cat.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg")

Payload = Callable[[int], bytes]


@dataclass
class LoadResult:
    """What a load run saw: answers by status, failures, latencies and the acknowledged ids."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # non-2xx answers and transport errors
    latencies: list[float] = field(default_factory=list)  # seconds, 2xx answers only
    elapsed: float = 0.0
    acked: dict[str, bytes] = field(default_factory=dict)  # id -> bytes, when keep_acked
    server_cpu_s: float = 0.0  # CPU time the server used meanwhile, when the caller measures it
    loop_cpu_s: float = 0.0  # of it, its event loop's thread (the main thread), likewise
    client: str = "httpx"  # the load generator: "httpx" (run_load) or "wrk" (run_wrk)
    percentiles: dict[float, float] = field(default_factory=dict)  # q -> s, from wrk

    @property
    def ok(self) -> int:
        """Requests answered 2xx."""
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def rate(self) -> float:
        """2xx answers per second of wall time."""
        return self.ok / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU milliseconds per 2xx answer: steadier than rates on a shared machine."""
        return 1000 * self.server_cpu_s / self.ok if self.ok else float("nan")

    @property
    def loop_cpu_ms_per_request(self) -> float:
        """CPU milliseconds of the server's event-loop thread per 2xx answer: one thread, so
        1000 / this bounds the rate however many cores are free."""
        return 1000 * self.loop_cpu_s / self.ok if self.ok else float("nan")

    def percentile_ms(self, q: float) -> float:
        """The q-quantile (0..1) of 2xx latencies, in milliseconds (nearest rank)."""
        if not self.latencies:
            return 1000 * self.percentiles.get(q, float("nan"))
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        """One line for people."""
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{self.sent} requests in {self.elapsed:.1f} s, {self.rate:.1f}/s 2xx; "
            f"statuses {{{statuses}}}; errors {len(self.errors)}; latency ms p50 "
            f"{self.percentile_ms(0.5):.0f} p90 {self.percentile_ms(0.9):.0f} "
            f"p99 {self.percentile_ms(0.99):.0f} max {self.percentile_ms(1.0):.0f}"
        )


BOUNDARY = "imgest-load-boundary-7f3a"
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def multipart(data: bytes, filename: str) -> bytes:
    """A one-file multipart/form-data body, built in one join: the client stays cheap."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'
    )
    return b"".join((head.encode(), data, f"\r\n--{BOUNDARY}--\r\n".encode()))


def require_loopback(url: str) -> None:
    """Refuse any target but this machine."""
    if urlsplit(url).hostname not in LOOPBACK:
        raise SystemExit(f"{url}: the bench scripts only target a server on loopback")


def small_payloads(tag: str) -> Payload:
    """payload(i): one of the tests/data photos (451x300 .. 512x512), unique per i."""
    photos = [(ROOT / "tests" / "data" / name).read_bytes() for name in SMALL_PHOTOS]
    stamp = f"{tag}-{time.time_ns()}"
    return lambda i: photos[i % len(photos)] + f"imgest-load-{stamp}-{i}".encode()


def large_payloads(tag: str) -> Payload:
    """payload(i): the 12 MP photo of bench/normalize.py, unique per i."""
    from bench import normalize

    photo = normalize.photo()
    stamp = f"{tag}-{time.time_ns()}"
    return lambda i: photo + f"imgest-load-{stamp}-{i}".encode()


async def run_load(
    url: str,
    payload: Payload,
    *,
    concurrency: int,
    duration: float | None = None,
    count: int | None = None,
    path: str = "/v1/images",
    get: Callable[[int], str] | None = None,
    keep_acked: bool = False,
    stop_on_disconnect: bool = False,
) -> LoadResult:
    """Upload payload(0), payload(1), ... `concurrency` at a time until `duration` s or `count`.

    With `get`, request GET url + get(i) instead (payload is not called). With
    `stop_on_disconnect` a transport error ends that client quietly (the server was killed on
    purpose) instead of counting as an error.
    """
    if duration is None and count is None:
        raise ValueError("give a duration, a count or both")
    require_loopback(url)
    result = LoadResult()
    deadline = time.monotonic() + duration if duration is not None else float("inf")
    counter = iter(range(count if count is not None else sys.maxsize))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(http: httpx.AsyncClient) -> None:
        for i in counter:
            if time.monotonic() >= deadline:
                return
            data = b"" if get else payload(i)
            result.sent += 1
            started = time.perf_counter()
            try:
                if get:
                    r = await http.get(url + get(i))
                else:
                    body = multipart(data, f"{i}.jpg")
                    r = await http.post(url + path, content=body, headers=MULTIPART)
            except httpx.TransportError as exc:
                if stop_on_disconnect:
                    result.sent -= 1  # never answered: the server went away under it
                    return
                result.errors.append(f"upload {i}: {type(exc).__name__}: {exc}")
                continue
            result.statuses[r.status_code] += 1
            if not 200 <= r.status_code < 300:
                result.errors.append(f"upload {i}: HTTP {r.status_code}: {r.text[:200]}")
                continue
            result.latencies.append(time.perf_counter() - started)
            if keep_acked:
                result.acked[r.json()["images"][0]["id"]] = data

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


WRK_SCRIPT = """\
wrk.method = "POST"
local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "{content_type}"
"""
_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def run_wrk(url: str, body: bytes, *, concurrency: int, seconds: float) -> LoadResult:
    """POST the same multipart `body` to url + /v1/images with wrk (C, one thread) for
    `seconds`: a load generator that leaves the cores to the server, where a Python client
    sending megabytes costs about as much CPU as the server answering. Needs `wrk` on PATH."""
    require_loopback(url)
    with tempfile.TemporaryDirectory(prefix="imgest-wrk-") as tmp:
        body_file, script = Path(tmp) / "body", Path(tmp) / "post.lua"
        body_file.write_bytes(body)
        script.write_text(WRK_SCRIPT.format(body=body_file, content_type=MULTIPART["content-type"]))
        argv = ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{seconds:g}s", "--latency"]
        out = subprocess.run(
            [*argv, "-s", str(script), url + "/v1/images"],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> LoadResult:
    """A LoadResult from wrk's --latency report (counts, elapsed, percentiles, failures)."""
    result = LoadResult(client="wrk")
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if done is None:
        raise RuntimeError(f"wrk printed no request count:\n{out}")
    result.sent = int(done.group(1))
    result.elapsed = float(done.group(2)) * _WRK_UNITS[done.group(3)]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = int(failed.group(1)) if failed else 0
    result.statuses[200] = result.sent - bad
    if bad:
        result.statuses[0] = bad
        result.errors.append(f"wrk: {bad} non-2xx answers")
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        result.errors.append(f"wrk socket errors: {socket_errors.group(1)}")
    for q, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        result.percentiles[int(q) / 100] = float(value) * _WRK_UNITS[unit]
    return result


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """A process's resident set (VmRSS) or its peak (VmHWM) from /proc, in MB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} for pid {pid}")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time a process (or its `thread`, by id: the main thread's is the
    pid) has used so far (from /proc/<pid>/stat or /proc/<pid>/task/<thread>/stat)."""
    where = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(where) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def burst_peak_rss(folder: Path, env: dict[str, str], tag: str, concurrency: int = 32) -> float:
    """Peak RSS (VmHWM, MB) of a fresh server after `concurrency` concurrent 12 MP uploads
    (warmed by a few small ones first)."""
    from tests.services.imgest_server import Server

    server = Server(folder, env=env)
    server.start()
    try:
        assert server.proc is not None
        asyncio.run(run_load(server.base, small_payloads(tag), concurrency=4, count=16))
        result = asyncio.run(
            run_load(server.base, large_payloads(tag), concurrency=concurrency, count=concurrency)
        )
        if result.errors:
            raise RuntimeError(f"memory run: {result.errors[0]}")
        return rss_mb(server.proc.pid, "VmHWM")
    finally:
        server.stop()


def median(values: list[float]) -> float:
    """statistics.median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="an imgest server on loopback (default: start one)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds")
    parser.add_argument("--count", type=int, help="stop after this many uploads")
    parser.add_argument("--size", choices=("small", "12mp"), default="small")
    args = parser.parse_args()
    payload = (small_payloads if args.size == "small" else large_payloads)("load")
    with tempfile.TemporaryDirectory(prefix="imgest-load-") as tmp:
        server = None
        url = args.url
        if url is None:
            from tests.services.imgest_server import Server

            server = Server(Path(tmp))
            server.start()
            url = server.base
        try:
            result = asyncio.run(
                run_load(
                    url.rstrip("/"),
                    payload,
                    concurrency=args.concurrency,
                    duration=args.duration,
                    count=args.count,
                )
            )
        finally:
            if server is not None:
                server.stop()
    print(f"load: {args.size} photos, concurrency {args.concurrency}: {result.summary()}")
    for error in result.errors[:10]:
        print("  " + error)
    return 1 if result.errors or not result.ok else 0


if __name__ == "__main__":
    sys.exit(main())
