"""Benchmark: 12 MP uploads over HTTP, ours against the naive app and thumbor, in one run.

Three servers on loopback at once (imgest serve, bench/naive_app.py, thumbor); each round
loads one after the other at concurrency 8, so a busy machine slows all of them alike, and the
ratios use medians over the rounds. Each round also asks ours for on-demand 224 renditions
of the photos it just took: the same work thumbor does. Also: re-uploads of stored bytes
(dedupe), and peak RSS of fresh servers taking 32 concurrent 12 MP uploads, with our malloc
settings and others.
The load client runs on the same cores as the servers: the Python client (httpx) for uploads
and renditions, wrk (C, installed by `make bench`) for duplicate uploads, where sending 3.4 MB
from Python costs about as much CPU as the server's answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench import normalize, servers  # noqa: E402
from bench.ingest_floor import decode_floor_ms, image_work_ms  # noqa: E402
from bench.load import (  # noqa: E402
    LoadResult,
    burst_peak_rss,
    cpu_seconds,
    large_payloads,
    multipart,
    run_load,
    run_wrk,
    small_payloads,
)
from tests.services.imgest_server import Server, free_port  # noqa: E402

NAME = "ingest_http"
TITLE = "HTTP: 12 MP JPEG uploads, ours vs the naive app vs thumbor (same run)"
CONCURRENCY = 8
ROUNDS = 3
OURS_PER_ROUND = 48
NAIVE_PER_ROUND = 16
THUMBOR_PER_ROUND = 24
DUPLICATES_PER_ROUND = 400  # with the Python client, where wrk is missing
DUPLICATE_SECONDS = 3.0  # with wrk
THUMBOR_FILES = 8
RENDITION = "stretch"  # a built-in pipeline that uploads do not render
INTERMEDIATE = "720"  # the long side docs/intermediate.md recommends
MEMORY_CONCURRENCY = 32
MALLOC_SETTINGS = {  # label -> server environment
    "ours (`malloc_arena_max=2`, `malloc_mmap_threshold=0`: glibc's dynamic threshold)": {},
    "fixed `malloc_mmap_threshold=1 MiB` (the default before 2026-11-26)": {
        "IMGEST_MALLOC_MMAP_THRESHOLD": str(1024 * 1024)
    },
    "glibc defaults (`malloc_arena_max=0` too)": {"IMGEST_MALLOC_ARENA_MAX": "0"},
}
OURS = next(iter(MALLOC_SETTINGS))
TARGETS = {"rate": 25.0, "vs_naive": 4.0, "duplicates": 200.0, "vs_thumbor": 5.0, "rss": 400.0}


def _load(server: Any, payload: Any, count: int, **kwargs: Any) -> LoadResult:
    """`count` requests at CONCURRENCY; also the server's CPU time meanwhile."""
    pid = server.proc.pid
    before, loop_before = cpu_seconds(pid), cpu_seconds(pid, thread=pid)
    result = asyncio.run(
        run_load(server.base, payload, concurrency=CONCURRENCY, count=count, **kwargs)
    )
    result.server_cpu_s = cpu_seconds(pid) - before
    result.loop_cpu_s = cpu_seconds(pid, thread=pid) - loop_before
    if result.errors:
        raise RuntimeError(f"{server.base}: {len(result.errors)} errors, first: {result.errors[0]}")
    return result


def _duplicates(server: Any, data: bytes) -> LoadResult:
    """Re-uploads of `data` (already stored) for DUPLICATE_SECONDS with wrk, or, where wrk
    is missing, DUPLICATES_PER_ROUND of them with the Python client; also the server's CPU."""
    if not shutil.which("wrk"):
        return _load(server, lambda i: data, DUPLICATES_PER_ROUND)
    pid = server.proc.pid
    before, loop_before = cpu_seconds(pid), cpu_seconds(pid, thread=pid)
    body = multipart(data, "duplicate.jpg")
    result = run_wrk(server.base, body, concurrency=CONCURRENCY, seconds=DUPLICATE_SECONDS)
    result.server_cpu_s = cpu_seconds(pid) - before
    result.loop_cpu_s = cpu_seconds(pid, thread=pid) - loop_before
    if result.errors:
        raise RuntimeError(f"{server.base}: {result.errors[0]}")
    return result


def _thumbor_originals(folder: Path) -> list[str]:
    """Distinct 12 MP files for thumbor's file loader (same pixels, different bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = normalize.photo()
    names = []
    for i in range(THUMBOR_FILES):
        name = f"photo-{i}.jpg"
        (folder / name).write_bytes(photo + f"thumbor-{i}".encode())
        names.append(name)
    return names


def _median_rate(results: list[LoadResult]) -> float:
    return statistics.median(r.rate for r in results) if results else float("nan")


def _pooled_percentiles(results: list[LoadResult]) -> tuple[float, float]:
    """p50 and p99 ms of the rounds' latencies together; for wrk, which reports only its
    percentiles, the median of the rounds' percentiles."""
    if any(r.latencies for r in results):
        both = LoadResult(latencies=[x for r in results for x in r.latencies])
        return both.percentile_ms(0.5), both.percentile_ms(0.99)
    return (
        statistics.median(r.percentile_ms(0.5) for r in results),
        statistics.median(r.percentile_ms(0.99) for r in results),
    )


def _median_cpu(results: list[LoadResult]) -> float:
    return statistics.median(r.cpu_ms_per_request for r in results) if results else float("nan")


def _median_loop_cpu(results: list[LoadResult]) -> float:
    if not results:
        return float("nan")
    return statistics.median(r.loop_cpu_ms_per_request for r in results)


def run(repeats: int = 15) -> dict[str, Any]:
    """Measure every case; `repeats` is unused (rounds are fixed to keep `make bench` short)."""
    ours: list[LoadResult] = []
    naive: list[LoadResult] = []
    thumbor: list[LoadResult] = []
    renditions: list[LoadResult] = []
    from_intermediate: list[LoadResult] = []
    duplicates: list[LoadResult] = []
    small_duplicates: list[LoadResult] = []
    floors: list[float] = []  # CPU ms of the 12 MP photo's DCT-scaled decode, per round
    works: list[float] = []  # CPU ms of its render + one inference (no server), per round
    thumbor_error = ""
    with tempfile.TemporaryDirectory(prefix="imgest-bench-http-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "ours").mkdir()
        imgest = Server(tmp / "ours")
        # The same server with the intermediate on (issue 18): its on-demand renditions render
        # from the stored intermediate; only those are timed here.
        (tmp / "inter").mkdir()
        inter = Server(tmp / "inter", env={"IMGEST_INTERMEDIATE": INTERMEDIATE})
        naive_app = servers.naive_app(tmp / "naive", free_port())
        names = _thumbor_originals(tmp / "originals")
        thumbor_app = servers.thumbor(tmp / "originals", tmp / "thumbor", free_port(), names[0])
        started: list[Any] = []
        try:
            imgest.start()
            started.append(imgest)
            inter.start()
            started.append(inter)
            naive_app.start()
            started.append(naive_app)
            try:
                thumbor_app.start()
                started.append(thumbor_app)
            except RuntimeError as exc:
                thumbor_error = str(exc).splitlines()[0]
            big = large_payloads("http")
            stored = big(10**9)
            _load(imgest, lambda i: stored, 1)  # the one the duplicate runs re-send
            small = small_payloads("http-dup")(0)
            _load(imgest, lambda i: small, 1)
            _load(imgest, lambda i: big(10**9 + 1 + i), 8)  # warm-up
            _load(naive_app, big, 4, path="/upload")
            for r in range(ROUNDS):
                floors.append(decode_floor_ms(stored))
                works.append(image_work_ms(stored))
                offset = r * 1000
                ours.append(_load(imgest, lambda i, o=offset: big(o + i), OURS_PER_ROUND))
                # The same work thumbor does (a 224 rendition of a 12 MP original it holds),
                # on the photos just uploaded: each GET renders pipeline `stretch` from the
                # stored original for the first time, stores it and records it.
                ids = [hashlib.sha256(big(offset + i)).hexdigest() for i in range(OURS_PER_ROUND)]
                renditions.append(
                    _load(
                        imgest,
                        big,
                        THUMBOR_PER_ROUND,
                        get=lambda i, ids=ids: f"/v1/images/{ids[i]}/renditions/{RENDITION}",
                    )
                )
                _load(inter, lambda i, o=offset: big(o + i), THUMBOR_PER_ROUND)  # not timed
                from_intermediate.append(
                    _load(
                        inter,
                        big,
                        THUMBOR_PER_ROUND,
                        get=lambda i, ids=ids: f"/v1/images/{ids[i]}/renditions/{RENDITION}",
                    )
                )
                naive.append(
                    _load(
                        naive_app,
                        lambda i, o=offset: big(o + i + 500),
                        NAIVE_PER_ROUND,
                        path="/upload",
                    )
                )
                if not thumbor_error:
                    thumbor.append(
                        _load(
                            thumbor_app,
                            big,
                            THUMBOR_PER_ROUND,
                            get=lambda i: f"/unsafe/224x224/{names[i % len(names)]}",
                        )
                    )
                duplicates.append(_duplicates(imgest, stored))
                small_duplicates.append(_duplicates(imgest, small))
        finally:
            for child in reversed(started):
                child.stop()
        peaks: dict[str, list[float]] = {label: [] for label in MALLOC_SETTINGS}
        for r in range(2):
            for label, env in MALLOC_SETTINGS.items():
                folder = tmp / f"memory-{label}-{r}"
                folder.mkdir()
                peaks[label].append(
                    burst_peak_rss(folder, env, f"mem-{label}-{r}", MEMORY_CONCURRENCY)
                )
    return _result(
        ours,
        naive,
        thumbor,
        renditions,
        from_intermediate,
        duplicates,
        small_duplicates,
        peaks,
        thumbor_error,
        floors,
        works,
    )


def _result(
    ours: list[LoadResult],
    naive: list[LoadResult],
    thumbor: list[LoadResult],
    renditions: list[LoadResult],
    from_intermediate: list[LoadResult],
    duplicates: list[LoadResult],
    small_duplicates: list[LoadResult],
    peaks: dict[str, list[float]],
    thumbor_error: str,
    floors: list[float],
    works: list[float],
) -> dict[str, Any]:
    latencies = [x for r in ours for x in r.latencies]
    pooled = LoadResult(latencies=latencies)
    p50, p99 = pooled.percentile_ms(0.5), pooled.percentile_ms(0.99)
    rate, naive_rate = _median_rate(ours), _median_rate(naive)
    dup_rate = _median_rate(duplicates)
    thumbor_rate = _median_rate(thumbor) if thumbor else float("nan")
    rendition_rate = _median_rate(renditions)
    intermediate_rate = _median_rate(from_intermediate)
    peak = max(peaks[OURS])
    rows = [
        ("ours: POST /v1/images (store original + rendition, score, commit)", ours),
        ("naive app: UploadFile + Pillow full decode + ONNX per image", naive),
        ("thumbor: GET /unsafe/224x224/<file> (file loader, no storage)", thumbor),
        ("ours: duplicate upload of a stored 12 MP photo", duplicates),
        ("ours: duplicate upload of a stored small photo (cat.jpg, 33 KB)", small_duplicates),
        (
            f"ours: GET /v1/images/{{id}}/renditions/{RENDITION} (first request: render from "
            "the stored original, store, record)",
            renditions,
        ),
        (
            f"ours, IMGEST_INTERMEDIATE={INTERMEDIATE}: GET /v1/images/{{id}}/renditions/"
            f"{RENDITION} (first request: render from the stored intermediate)",
            from_intermediate,
        ),
    ]
    cpu = {case: _median_cpu(results) for case, results in rows}
    loop_cpu = {case: _median_loop_cpu(results) for case, results in rows}
    dup_client = duplicates[0].client if duplicates else "none"
    dup_work = (
        f"{DUPLICATE_SECONDS:g} s of duplicate uploads of each kind sent by wrk"
        if dup_client == "wrk"
        else f"{DUPLICATES_PER_ROUND} duplicate uploads of each kind (httpx: wrk not installed)"
    )
    ours_cpu = cpu[rows[0][0]]
    lines = [
        f"Each round: {OURS_PER_ROUND} new 12 MP uploads to ours, {NAIVE_PER_ROUND} to the "
        f"naive app, {THUMBOR_PER_ROUND} thumbor renditions and {THUMBOR_PER_ROUND} of ours "
        f"(on-demand, of just-uploaded photos), {dup_work}, all at concurrency "
        f"{CONCURRENCY}; {ROUNDS} rounds, medians of "
        "the rounds. 'server CPU ms' is the server process's user + system CPU time per "
        "answer: on a shared machine it moves far less than the rates do, so its ratio is "
        "shown as well ('vs ours, by CPU' = their CPU ms / ours). 'main thread ms': the part "
        "of it spent by the server's main thread, the event loop that receives every request "
        "body (uvicorn, tornado): one thread, so 1000 / it bounds the rate whatever the cores.",
        "",
        "| case | median /s | rounds /s | p50 ms | p99 ms | vs ours | server CPU ms | "
        "main thread ms | vs ours, by CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, results in rows:
        if not results:
            lines.append(f"| {case} | not run | {thumbor_error} | | | | | | |")
            continue
        median = _median_rate(results)
        p50_ms, p99_ms = _pooled_percentiles(results)
        lines.append(
            f"| {case} | {median:.1f} | {' / '.join(f'{r.rate:.1f}' for r in results)} | "
            f"{p50_ms:.0f} | {p99_ms:.0f} | "
            f"{median / rate:.2f}x | {cpu[case]:.1f} | {loop_cpu[case]:.1f} | "
            f"{cpu[case] / ours_cpu:.2f}x |"
        )
    lines += [
        "",
        f"Peak RSS (VmHWM) of a fresh server after {MEMORY_CONCURRENCY} concurrent 12 MP "
        "uploads, two fresh servers each:",
        "",
        "| malloc settings | peak RSS MB |",
        "|---|---|",
        *(
            f"| {label} | {' / '.join(f'{p:.0f}' for p in values)} |"
            for label, values in peaks.items()
        ),
        "",
    ]
    cores = os.cpu_count() or 1
    dup_cpu, naive_cpu = cpu[rows[3][0]], cpu[rows[1][0]]
    dup_loop = loop_cpu[rows[3][0]]
    floor = statistics.median(floors) if floors else float("nan")
    work = statistics.median(works) if works else float("nan")
    thumbor_cpu = cpu[rows[2][0]]
    rendition_cpu = cpu[rows[5][0]]
    intermediate_cpu = cpu[rows[6][0]]

    def vs_thumbor(ours_rate: float, ours_cpu_ms: float) -> dict[str, Any]:
        """A rendition target's wanted, measured and met fields, against thumbor's."""
        wanted = {"target": f">= {TARGETS['vs_thumbor']:.0f}x"}
        if not thumbor:
            return {**wanted, "value": f"thumbor not run: {thumbor_error}", "met": False}
        return {
            **wanted,
            "value": f"{ours_rate / thumbor_rate:.2f}x ({ours_rate:.1f}/s vs "
            f"{thumbor_rate:.1f}/s; by server CPU {thumbor_cpu / ours_cpu_ms:.2f}x)",
            "met": ours_rate / thumbor_rate >= TARGETS["vs_thumbor"],
        }

    targets = [
        {
            "note": f"bound: {ours_cpu:.0f} server CPU ms per upload, so at most "
            f"{1000 * cores / ours_cpu:.0f}/s on {cores} idle cores, which the load client "
            f"also uses; the image work alone (render + one inference, no server: {work:.0f} "
            f"ms in this run) would allow {1000 * cores / work:.0f}/s. Where the rest goes is "
            "in the profile below (HTTP receive on the event loop, catalog and blob writes, "
            "thread hand-offs)",
            "what": "HTTP ingest of 12 MP JPEGs, 2 cores, concurrency 8",
            "target": f">= {TARGETS['rate']:.0f}/s",
            "value": f"{rate:.1f}/s (p50 {p50:.0f} ms, p99 {p99:.0f} ms)",
            "met": rate >= TARGETS["rate"],
        },
        {
            "note": f"bound: the naive app spends {naive_cpu:.0f} server CPU ms per upload "
            f"(full-size decode and resize), ours {ours_cpu:.0f} ms. The image work no ingest "
            f"of the file skips (render at the DCT-scaled decode + one inference, no server) "
            f"is {work:.0f} ms in this run, so even a server that did nothing else would be "
            f"{naive_cpu / work:.1f}x by CPU; ours also receives the body, writes two blobs "
            "durably and a catalog transaction that the naive app skips",
            "what": "HTTP ingest: ours vs the naive app",
            "target": f">= {TARGETS['vs_naive']:.0f}x",
            "value": f"{rate / naive_rate:.2f}x ({rate:.1f}/s vs {naive_rate:.1f}/s; "
            f"by server CPU {cpu[rows[1][0]] / ours_cpu:.2f}x)",
            "met": rate / naive_rate >= TARGETS["vs_naive"],
        },
        {
            "note": f"load from {dup_client}. bound: a duplicate still streams its 3.4 MB "
            "through the HTTP parser and the multipart parser on the event loop, is hashed in "
            f"a worker thread and looked up in the catalog: {dup_cpu:.1f} server CPU ms, "
            f"{dup_loop:.1f} of them on the event loop's one thread (socket reads into new "
            "buffers, h11's receive buffer, the boundary search, the part's join), so at most "
            f"{1000 / dup_loop:.0f}/s from it however many cores are free, and "
            f"{1000 * cores / dup_cpu:.0f}/s on {cores} idle cores without a load client. "
            "Clients that can send the hash first skip the body (`HEAD /v1/images/{sha256}`, "
            "as `imgest import` does)",
            "what": "duplicate upload (already stored), 12 MP",
            "target": f">= {TARGETS['duplicates']:.0f}/s",
            "value": f"{dup_rate:.1f}/s ({cpu[rows[3][0]]:.1f} server CPU ms each; small "
            f"photo: {_median_rate(small_duplicates):.1f}/s)",
            "met": dup_rate >= TARGETS["duplicates"],
        },
        {
            "note": f"both render a 224x224 JPEG from a 12 MP original they hold; ours also "
            f"stores it (fsync) and records it in the catalog; thumbor spends "
            f"{thumbor_cpu:.0f} server CPU ms per rendition, ours {rendition_cpu:.0f}. "
            f"bound: 5x by CPU would leave {thumbor_cpu / TARGETS['vs_thumbor']:.0f} ms per "
            f"rendition, and the DCT-scaled decode of the original alone is {floor:.0f} ms "
            "(best of 7, median of the rounds), to which the request, the resize, the "
            "encode, the durable put and the catalog row add; the row below renders from the "
            f"intermediate instead. Our full upload path (receive, store both, score, commit) "
            f"does {rate:.1f}/s",
            "what": f"224 rendition over HTTP: ours (on-demand `{RENDITION}`) vs thumbor",
            **vs_thumbor(rendition_rate, rendition_cpu),
        },
        {
            "note": f"the same rendition as the row above, by a server with the intermediate "
            f"on (docs/intermediate.md): {intermediate_cpu:.0f} server CPU ms per rendition "
            f"against {rendition_cpu:.0f} from the original and thumbor's {thumbor_cpu:.0f}",
            "what": f"224 rendition over HTTP from the intermediate (`{RENDITION}`) vs thumbor",
            **vs_thumbor(intermediate_rate, intermediate_cpu),
        },
        {
            "what": f"peak server RSS, {MEMORY_CONCURRENCY} concurrent 12 MP uploads",
            "target": f"< {TARGETS['rss']:.0f} MB",
            "value": f"{peak:.0f} MB (worst of {len(peaks[OURS])} fresh servers)",
            "met": peak < TARGETS["rss"],
        },
    ]
    return {
        "name": NAME,
        "title": TITLE,
        "input": f"{normalize.SIZE[0]}x{normalize.SIZE[1]} JPEG q90 (bench/normalize.py), "
        "each upload made unique by a trailer after its end marker",
        "lines": lines,
        "targets": targets,
        "summary": {"rate": rate, "naive": naive_rate, "thumbor": thumbor_rate, "peak": peak},
    }


def print_table(result: dict[str, Any]) -> None:
    """Print the result as plain text."""
    print(result["title"])
    for line in result["lines"]:
        print("  " + line)
    for t in result["targets"]:
        verdict = "met" if t["met"] else "NOT met"
        print(f"  target {t['what']}: {t['target']}, got {t['value']} -> {verdict}")


if __name__ == "__main__":
    print_table(run())
