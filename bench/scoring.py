"""Benchmark: the bundled model in onnxruntime by run size and thread count.

Per-image time (interleaved rounds, medians) with a batch given to onnxruntime in one run of
each size, and the memory one run of each size leaves in onnxruntime's arena (a fresh process
per size: the arena never shrinks). These pick the defaults `batch_max_size`,
`inference_threads` and `CPU_RUN_INPUTS` (how many inputs `Model.predict` gives onnxruntime
per run on the CPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from bench.normalize import interleaved  # noqa: E402
from imgest.scoring.model import BUNDLED_DIR, CPU_RUN_INPUTS, Model  # noqa: E402

NAME = "scoring"
TITLE = "Scoring: EfficientNet-Lite0 (onnxruntime, CPU) by run size and threads"
BATCHES = (1, 4, 8, 16)

_ARENA_SCRIPT = """
import sys
import numpy as np
from imgest.scoring.model import BUNDLED_DIR, Model
def rss():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:")) / 1024
model = Model(BUNDLED_DIR)
before = rss()
n = int(sys.argv[1])
model.predict(np.zeros((n, 3, 224, 224), np.float32), per_run=n)
print(rss() - before)
"""


def arena_growth_mb(batch: int) -> float:
    """RSS a fresh process gains from its first predict() of `batch` images (MB)."""
    out = subprocess.run(
        [sys.executable, "-c", _ARENA_SCRIPT, str(batch)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip())


def run(repeats: int = 15) -> dict[str, Any]:
    """Per-image ms for each (threads, batch) and the arena each batch size leaves."""
    cores = os.cpu_count() or 1
    models = {threads: Model(BUNDLED_DIR, threads=threads) for threads in sorted({1, cores})}
    rng = np.random.default_rng(0)
    inputs = {b: rng.standard_normal((b, 3, 224, 224)).astype(np.float32) for b in BATCHES}
    cases = {
        (threads, b): (lambda m=model, x=inputs[b], b=b: m.predict(x, per_run=b))
        for threads, model in models.items()
        for b in BATCHES
    }
    medians = interleaved({f"{t}/{b}": fn for (t, b), fn in cases.items()}, max(5, repeats // 2))
    arena = {b: arena_growth_mb(b) for b in BATCHES}
    lines = [
        f"{max(5, repeats // 2)} interleaved rounds; 'per image' = run time / run size; "
        f"on the CPU, Model.predict gives onnxruntime {CPU_RUN_INPUTS} inputs per run.",
        "",
        "| threads | run size | ms per run | ms per image | images/s | arena after one run MB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for (threads, b), _ in cases.items():
        ms = medians[f"{threads}/{b}"]
        lines.append(
            f"| {threads} | {b} | {ms:.1f} | {ms / b:.2f} | {1000 * b / ms:.1f} | {arena[b]:.0f} |"
        )
    lines.append("")
    return {"name": NAME, "title": TITLE, "input": "random tensors", "lines": lines, "targets": []}


def print_table(result: dict[str, Any]) -> None:
    """Print the result as plain text."""
    print(result["title"])
    for line in result["lines"]:
        print("  " + line)


if __name__ == "__main__":
    print_table(run())
