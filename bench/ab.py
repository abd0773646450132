"""A/B two server configurations (IMGEST_* or malloc environment) side by side, for tuning.

Usage (loopback only; starts both servers in a temporary folder):
    .venv/bin/python bench/ab.py --b IMGEST_MALLOC_ARENA_MAX=0 IMGEST_MALLOC_MMAP_THRESHOLD=0 \
        --mode dup
Modes: `ingest` (new 12 MP uploads), `dup` (re-uploads of a stored 12 MP photo): both servers
run at once and rounds alternate between them; reported are median rates and the server CPU
ms per answer (steadier than rates on a shared machine). `fresh`: new 12 MP uploads too, but
a fresh server per side and round, one server at a time (the order alternated), each store
kept until the end: for levers whose effect one server's state can spill into another's
(the page cache: a server that drops its written pages hands them to one that keeps its own).
`memory`: a fresh server per side and round takes 32 concurrent 12 MP uploads; reported is
its peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.load import burst_peak_rss, cpu_seconds, large_payloads, run_load  # noqa: E402
from tests.services.imgest_server import Server  # noqa: E402


def env_of(pairs: list[str]) -> dict[str, str]:
    """['K=V', ...] -> {K: V}."""
    return dict(pair.split("=", 1) for pair in pairs)


def throughput(sides: dict[str, dict[str, str]], mode: str, rounds: int, tmp: Path) -> None:
    servers = {}
    for name, env in sides.items():
        (tmp / name).mkdir()
        servers[name] = Server(tmp / name, env=env)
        servers[name].start()
    try:
        big = large_payloads("ab")
        stored = big(10**9)
        rates: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        for server in servers.values():
            asyncio.run(run_load(server.base, lambda i: stored, concurrency=1, count=1))
        for r in range(rounds):
            for name, server in servers.items():
                assert server.proc is not None
                before = cpu_seconds(server.proc.pid)
                if mode == "dup":
                    payload = lambda i: stored  # noqa: E731
                    result = asyncio.run(run_load(server.base, payload, concurrency=8, duration=4))
                else:
                    payload = lambda i, r=r: big(r * 1000 + i)  # noqa: E731
                    result = asyncio.run(run_load(server.base, payload, concurrency=8, count=24))
                if result.errors:
                    raise SystemExit(f"{name}: {result.errors[0]}")
                rates[name].append(result.rate)
                cpu[name].append(1000 * (cpu_seconds(server.proc.pid) - before) / result.ok)
        report(sides, mode, rates, cpu)
    finally:
        for server in servers.values():
            server.stop()


def fresh(sides: dict[str, dict[str, str]], rounds: int, tmp: Path, count: int = 48) -> None:
    rates: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    big = large_payloads("fresh")
    for r in range(rounds):
        for name, env in sides.items() if r % 2 == 0 else reversed(sides.items()):
            folder = tmp / f"{name}-{r}"
            folder.mkdir()
            server = Server(folder, env=env)
            server.start()
            try:
                assert server.proc is not None
                warm = asyncio.run(run_load(server.base, big, concurrency=8, count=8))
                before = cpu_seconds(server.proc.pid)
                payload = lambda i, r=r: big((r + 1) * 1000 + i)  # noqa: E731
                result = asyncio.run(run_load(server.base, payload, concurrency=8, count=count))
                if warm.errors or result.errors:
                    raise SystemExit(f"{name}: {(warm.errors or result.errors)[0]}")
                rates[name].append(result.rate)
                cpu[name].append(1000 * (cpu_seconds(server.proc.pid) - before) / result.ok)
            finally:
                server.stop()
    report(sides, "fresh", rates, cpu)


def report(
    sides: dict[str, dict[str, str]],
    mode: str,
    rates: dict[str, list[float]],
    cpu: dict[str, list[float]],
) -> None:
    for name in sides:
        print(
            f"{name} {sides[name] or '(defaults)'} {mode}: "
            f"median {statistics.median(rates[name]):.1f}/s "
            f"{[round(x, 1) for x in rates[name]]}; server CPU ms per answer median "
            f"{statistics.median(cpu[name]):.1f} {[round(x, 1) for x in cpu[name]]}"
        )


def memory(sides: dict[str, dict[str, str]], rounds: int, tmp: Path) -> None:
    peaks: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        for name, env in sides.items():
            folder = tmp / f"{name}-{r}"
            folder.mkdir()
            peaks[name].append(burst_peak_rss(folder, env, f"m{name}{r}"))
    for name in sides:
        print(
            f"{name} {sides[name] or '(defaults)'} memory: peak RSS MB per fresh server "
            f"{[round(p) for p in peaks[name]]}, median {statistics.median(peaks[name]):.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", nargs="*", default=[], help="A's environment, K=V ...")
    parser.add_argument("--b", nargs="*", default=[], help="B's environment, K=V ...")
    parser.add_argument("--mode", choices=("ingest", "dup", "fresh", "memory"), default="ingest")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    sides = {"A": env_of(args.a), "B": env_of(args.b)}
    with tempfile.TemporaryDirectory(prefix="imgest-ab-") as tmp:
        if args.mode == "memory":
            memory(sides, args.rounds, Path(tmp))
        elif args.mode == "fresh":
            fresh(sides, args.rounds, Path(tmp))
        else:
            throughput(sides, args.mode, args.rounds, Path(tmp))


if __name__ == "__main__":
    main()
