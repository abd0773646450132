"""imgest.metrics outside an app: several worker processes merge through multiprocess mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WORKER = """
from imgest.metrics import Metrics
m = Metrics()
m.requests.labels(method="GET", route="/healthz", status="200").inc({n})
m.ingested_bytes.inc(1000)
print(m.exposition().decode())
"""


def test_worker_processes_share_counters(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    outputs = [
        subprocess.run(
            [sys.executable, "-c", WORKER.format(n=n)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for n in (2, 3)
    ]
    last = outputs[-1]  # the second worker's scrape sees both workers' numbers
    assert 'imgest_http_requests_total{method="GET",route="/healthz",status="200"} 5.0' in last
    assert "imgest_ingested_bytes_total 2000.0" in last
