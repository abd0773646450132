"""Rescore throughput with --device cuda, against the CPU on the same machine.

Usage: python bench/gpu.py [--images N] [--json FILE]   (needs onnxruntime-gpu and a GPU;
bench/gpu.sh sets that up and runs the GPU tests first)

The corpus is bench/rescore.py's: N distinct 800x600 photo JPEGs ingested through the API into
a local store and a SQLite catalog; each case rescoring it through the `stretch` pipeline runs
on its own copy, so every image is pending. Rates are steady (images per wall second from
10% to 90% of the corpus, RescoreSummary.steady_rate) and end to end (start-up included).
Inference alone is the bundled model on inputs already in memory, by batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnxruntime as ort
from rescore import BATCH, bound, copy, ingest, steady

from imgest.scoring.model import BUNDLED_DIR, Model


def gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi: {exc}"


def inference(device: str, batch: int, *, threads: int = 0, seconds: float = 2.0) -> float:
    """Inputs per second of Model.predict alone, batches of `batch` already preprocessed."""
    model = Model(BUNDLED_DIR, device=device, threads=threads)
    width, height = model.input.size
    x = np.random.default_rng(0).standard_normal((batch, 3, height, width), dtype=np.float32)
    for _ in range(3):  # the first runs allocate (and on CUDA pick cuDNN algorithms)
        model.predict(x)
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        model.predict(x)
        runs += 1
    return runs * batch / elapsed


def rescore_case(template: Any, work: Path, name: str, **kwargs: Any) -> dict[str, Any]:
    """One rescore of a fresh copy: steady and end-to-end rates, start-up, and CPU ms per
    image of the driver and of the pool's workers over the steady stretch."""
    result = steady(copy(template, work / name), **kwargs)
    shutil.rmtree(work / name)
    return {"case": name, **kwargs, **result}


def preload_needed() -> str:
    """What a CUDA session reports in a fresh process that skips imgest's preload of the
    CUDA libraries: whether onnxruntime finds them on its own here."""
    code = (
        "import onnxruntime as o, sys; "
        "s = o.InferenceSession(sys.argv[1], providers=['CUDAExecutionProvider']); "
        "print(s.get_providers()[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(BUNDLED_DIR / "model.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout.strip() or out.stderr.strip()[-300:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    result: dict[str, Any] = {
        "gpu": gpu_name(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "cpu": f"{cores} cores, {platform.processor() or platform.machine()}",
        "command": f"python bench/gpu.py --images {args.images}",
    }
    result["without_preload"] = preload_needed()
    print(json.dumps(result, indent=1), flush=True)

    rows = []
    for device, batch, threads in [
        ("cuda", 1, 0),
        ("cuda", 16, 0),
        ("cuda", 64, 0),
        ("cuda", 256, 0),
        ("cpu", 16, 1),
        ("cpu", 16, 0),
    ]:
        rate = inference(device, batch, threads=threads)
        rows.append({"device": device, "batch": batch, "threads": threads or cores, "per_s": rate})
        print(f"inference {device} batch {batch} threads {threads or cores}: {rate:.0f}/s")
    result["inference"] = rows

    work = Path(tempfile.mkdtemp(prefix="imgest-bench-gpu-"))
    try:
        started = time.perf_counter()
        template = ingest(work / "template", args.images, clients=8, device="cuda")
        print(f"corpus of {args.images} ingested in {time.perf_counter() - started:.1f} s")
        bounds = {}
        for name, device, store in [("cpu", "cpu", False), ("cuda+store", "cuda", True)]:
            seconds, wall, count = bound(
                copy(template, work / f"bound-{name}"), store=store, device=device
            )
            bounds[name] = {"cpu_ms": 1000 * seconds / count, "per_s": count / wall}
            print(
                f"one core, {name}: {bounds[name]['cpu_ms']:.2f} CPU ms per image, "
                f"{bounds[name]['per_s']:.0f}/s",
                flush=True,
            )
        result["bound"] = bounds
        cases = [("cpu", cores, BATCH)]
        cases += [("cuda", 1, BATCH)]
        cases += [("cuda", w, b) for w in (cores // 2, cores) for b in (BATCH, 64)]
        cases += [("cuda", cores, 256)]
        runs = []
        for device, workers, batch in cases:
            row = rescore_case(
                template,
                work,
                f"{device}-w{workers}-b{batch}",
                device=device,
                workers=workers,
                batch_size=batch,
            )
            runs.append(row)
            print(
                f"rescore {device} workers {workers} batch {batch}: steady {row['rate']:.0f}/s, "
                f"end to end {row['e2e_rate']:.0f}/s, start-up {row['startup']:.1f} s, CPU ms "
                f"per image: driver {row.get('cpu_driver', 0):.2f}, "
                f"workers {row.get('cpu_workers', 0):.2f}",
                flush=True,
            )
        result["rescore"] = runs
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
