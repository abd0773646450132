"""Kill -9 under load, restart: every upload answered 2xx must be there, byte-identical.

Usage (loopback only; starts, kills and restarts its own server in a temporary folder):
    .venv/bin/python bench/kill.py --rounds 5 --concurrency 16 --before-kill 8
Each round loads the server with small new photos, SIGKILLs it after a random 0.5..1x of
--before-kill seconds, restarts it on the same storage and catalog, then checks every
acknowledged upload: its original byte-identical, its rendition and catalog row present.
Exits 1 on any missing or different image, or any non-2xx answer before the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.load import run_load, small_payloads  # noqa: E402
from tests.services.imgest_server import Server  # noqa: E402


async def killed_load(server: Server, args: argparse.Namespace, round_no: int) -> dict[str, bytes]:
    """Load the server, kill it mid-flight; return what it acknowledged before dying."""
    payload = small_payloads(f"kill{round_no}")
    delay = args.before_kill * random.uniform(0.5, 1.0)

    async def killer() -> None:
        await asyncio.sleep(delay)
        server.kill()

    load = asyncio.create_task(
        run_load(
            server.base,
            payload,
            concurrency=args.concurrency,
            duration=args.before_kill + 60,
            keep_acked=True,
            stop_on_disconnect=True,
        )
    )
    await killer()
    result = await load
    print(f"round {round_no}: killed after {delay:.1f} s; {result.summary()}")
    if result.errors:
        raise SystemExit("FAIL: errors before the kill:\n  " + "\n  ".join(result.errors[:10]))
    return result.acked


def check(server: Server, acked: dict[str, bytes]) -> list[str]:
    """Problems with the acknowledged images on the restarted server (empty when all is well)."""
    problems = []
    with httpx.Client(base_url=server.base, timeout=30) as http:
        for image_id, data in acked.items():
            r = http.get(f"/v1/images/{image_id}/original")
            if r.status_code != 200 or r.content != data:
                problems.append(
                    f"{image_id}: original HTTP {r.status_code}, same={r.content == data}"
                )
                continue
            meta = http.get(f"/v1/images/{image_id}")
            if meta.status_code != 200:
                problems.append(f"{image_id}: metadata HTTP {meta.status_code}")
                continue
            for rendition in meta.json()["renditions"].values():
                got = http.get(rendition["url"])
                if got.status_code != 200 or len(got.content) != rendition["bytes"]:
                    problems.append(f"{image_id}: rendition HTTP {got.status_code}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--before-kill", type=float, default=8.0, help="seconds of load")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    random.seed(args.seed)
    all_acked: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="imgest-kill-") as tmp:
        server = Server(Path(tmp))
        try:
            for round_no in range(1, args.rounds + 1):
                server.start()
                all_acked.update(asyncio.run(killed_load(server, args, round_no)))
            server.start()
            problems = check(server, all_acked)
        finally:
            server.stop()
    print(
        f"kill: {args.rounds} SIGKILLs under load at concurrency {args.concurrency}; "
        f"{len(all_acked)} acknowledged uploads checked after restart; "
        f"{len(problems)} missing or different"
    )
    for problem in problems[:20]:
        print("  " + problem)
    return 1 if problems or not all_acked else 0


if __name__ == "__main__":
    sys.exit(main())
