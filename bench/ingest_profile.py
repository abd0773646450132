"""Profile: where a 12 MP ingest spends its time, sampled by py-spy in the running server.

py-spy (the bench extra) samples every thread of a fresh `imgest serve` while it takes new
12 MP uploads at concurrency 8; each sample is charged to the first stage found walking up
its stack from the leaf, so the shares add up to 100% of the server's busy samples.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.load import large_payloads, run_load  # noqa: E402
from tests.services.imgest_server import Server  # noqa: E402

NAME = "ingest_profile"
TITLE = "Profile: one 12 MP ingest, by stage (py-spy, all server threads)"
SECONDS = 12
RATE = 250  # samples per second
# (stage, substrings of a py-spy frame "function (file:line)"); the first match from the leaf.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JPEG decode, DCT-scaled (simplejpeg)", ("_load_jpeg (",)),
    ("resize + crop (Pillow)", ("resize (imgest/imaging/steps.py", "_resize_")),
    ("rendition JPEG encode (Pillow)", ("encode (imgest/imaging/pipeline.py",)),
    ("probe + limits (header parse)", ("probe (imgest/imaging/sniff.py", "check (imgest")),
    ("pixels to tensor", ("preprocess (imgest/scoring/model.py",)),
    ("ONNX inference", ("predict (imgest/scoring/model.py", "infer (imgest/scoring/model.py")),
    ("near-duplicate search", ("search (imgest/similarity/",)),
    (
        "blob writes (temp file, fsync or group commit, link)",
        ("_put (imgest/storage/local.py", "_put_many (imgest/storage/local.py"),
    ),
    ("catalog insert (SQLite)", ("add_image (",)),
    ("catalog lookup (dedupe)", ("get_image (",)),
    ("multipart parse + SHA-256 + buffer", ("imgest/api/multipart.py",)),
    ("response JSON", ("item_out (", "model_dump", "JSONResponse")),
    ("HTTP server (uvicorn, h11, sockets)", ("uvicorn/", "h11/", "selector_events.py")),
    ("thread hand-offs (anyio, threading)", ("threading.py", "anyio/")),
)
# Leaf frames of a thread waiting for work (py-spy may catch it just before it sleeps).
IDLE = ("Condition.wait (", "EpollSelector.select (", "Queue.get (", "Event.wait (")


def stage_of(frames: list[str]) -> str:
    """The stage a sample belongs to, from its frames (root first)."""
    for frame in reversed(frames):
        for stage, needles in STAGES:
            if any(needle in frame for needle in needles):
                return stage
    return "other (event loop, FastAPI routing, Python runtime)"


def leaf_of(frames: list[str]) -> str:
    """'function (file:line)' of the sample's leaf with the path cut to package/module."""
    leaf = frames[-1]
    name, _, where = leaf.partition(" (")
    return f"{name} ({'/'.join(where.rstrip(')').split('/')[-2:])})"


def record(seconds: float) -> tuple[Path | None, str, str]:
    """Run the load under py-spy; (raw samples file or None, load summary, why not)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None, "", "py-spy is not installed (make bench installs the bench extra)"
    out = Path(tempfile.mkdtemp(prefix="imgest-profile-")) / "samples.txt"
    with tempfile.TemporaryDirectory(prefix="imgest-bench-profile-") as tmp:
        server = Server(Path(tmp))
        server.start()
        try:
            assert server.proc is not None
            big = large_payloads("profile")
            asyncio.run(run_load(server.base, big, concurrency=8, count=8))  # warm-up
            argv = [spy, "record", "-p", str(server.proc.pid), "-d", str(int(seconds))]
            argv += ["-r", str(RATE), "--threads", "--nonblocking", "-f", "raw", "-o", str(out)]
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)
            load = asyncio.run(
                run_load(
                    server.base,
                    lambda i: big(1000 + i),
                    concurrency=8,
                    duration=seconds - 2,
                )
            )
            _, err = proc.communicate(timeout=seconds + 60)
        finally:
            server.stop()
    if not out.exists():
        return None, load.summary(), f"py-spy failed: {err.decode(errors='replace')[-300:]}"
    return out, load.summary(), ""


def run(repeats: int = 15) -> dict[str, Any]:
    """Sample the server and tabulate stages and hottest leaf frames."""
    samples, load, why = record(SECONDS)
    lines: list[str] = []
    if samples is None:
        lines = [f"Not profiled: {why}", ""]
        return {"name": NAME, "title": TITLE, "lines": lines, "targets": []}
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        if not frames or not count.isdigit() or frames[-1].startswith(IDLE):
            continue
        stages[stage_of(frames)] += int(count)
        leaves[leaf_of(frames)] += int(count)
    total = sum(stages.values()) or 1
    lines = [
        f"{SECONDS - 2} s of new 12 MP uploads at concurrency 8 while py-spy sampled at "
        f"{RATE} Hz (load: {load}); {total} busy samples. Shares are of the server's busy "
        "samples across all its threads (a thread in a syscall such as fsync counts as busy; "
        "waits for work are left out).",
        "",
        "| stage | share |",
        "|---|---:|",
    ]
    lines += [f"| {stage} | {100 * n / total:.1f}% |" for stage, n in stages.most_common()]
    lines += ["", "Hottest leaf frames (self time):", "", "| frame | share |", "|---|---:|"]
    lines += [f"| `{leaf}` | {100 * n / total:.1f}% |" for leaf, n in leaves.most_common(12)]
    lines.append("")
    return {"name": NAME, "title": TITLE, "lines": lines, "targets": []}


def print_table(result: dict[str, Any]) -> None:
    """Print the result as plain text."""
    print(result["title"])
    for line in result["lines"]:
        print("  " + line)


if __name__ == "__main__":
    print_table(run())
