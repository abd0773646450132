"""Done-when test of issue 5: `imgest import` of 200 images through a proxy that drops
connections and answers 503 at random stores every image exactly once and does no work twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.services.fault_proxy import FAULTS, FaultProxy, Faults
from tests.services.imgest_server import Server
from tests.test_bulk import ground_truth, summary_counts

N_IMAGES = 200
SOURCES = ("cat.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg")
FAULT_RATES = Faults(
    unavailable=0.08,
    drop_request=0.05,
    drop_response=0.07,
    cut_response=0.04,
    abandon=0.04,
    retry_after="0",
)


def make_folder(root: Path, data_dir: Path, seed: int = 5) -> dict[str, Path]:
    """200 distinct small JPEGs (crops of the test photos with pixel jitter) in
    batch/class folders."""
    rng = np.random.default_rng(seed)
    photos = {name: Image.open(data_dir / name).convert("RGB") for name in SOURCES}
    made: dict[str, Path] = {}
    for i in range(N_IMAGES):
        name = SOURCES[i % len(SOURCES)]
        photo = photos[name]
        w, h = rng.integers(64, 112, size=2)
        x = int(rng.integers(0, photo.width - w))
        y = int(rng.integers(0, photo.height - h))
        crop = np.asarray(photo.crop((x, y, x + int(w), y + int(h))), dtype=np.int16)
        noisy = np.clip(crop + rng.integers(-6, 7, crop.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, "JPEG", quality=85)
        data = buf.getvalue()
        path = root / f"batch{i % 3}" / Path(name).stem / f"{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        made[hashlib.sha256(data).hexdigest()] = path
    (root / "README.txt").write_text("not an image; the extension filter skips it\n")
    assert len(made) == N_IMAGES, "the generated images must be distinct"
    return made


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "server").mkdir()
    srv = Server(tmp_path / "server")
    srv.start()
    yield srv
    srv.stop()


def run_import(folder: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "imgest.cli",
            "import",
            str(folder),
            "--url",
            url,
            "--tags-from-folders",
            "--label-from-folder",
            "--concurrency",
            "8",
            "--retries",
            "12",
            "--backoff",
            "0.05",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_import_through_faults_stores_each_image_once(
    server: Server, tmp_path: Path, data_dir: Path
) -> None:
    made = make_folder(tmp_path / "photos", data_dir)
    proxy = FaultProxy(server.port, faults=FAULT_RATES, seed=20261125)
    proxy.start()
    try:
        started = time.monotonic()
        first = run_import(tmp_path / "photos", proxy.url)
        print(f"first import: {time.monotonic() - started:.1f}s")
        assert first.returncode == 0, first.stdout + first.stderr[-3000:]
        assert summary_counts(first.stdout) == {
            "created": N_IMAGES,
            "existing": 0,
            "rejected": 0,
            "failed": 0,
        }, first.stdout
        faults = proxy.counts()
        print("faults in the first run:", dict(faults))
        for fault in FAULTS:  # the run really met every kind of fault
            assert faults[fault] > 0, faults

        # Every image stored exactly once, with its folder metadata.
        listed = httpx.get(f"{server.base}/v1/images", params={"limit": 500}).json()["items"]
        assert len(listed) == N_IMAGES
        assert {i["id"] for i in listed} == set(made)
        for item in listed:
            path = made[item["id"]]
            assert ground_truth(item) == path.parent.name
            assert sorted(item["tags"]) == sorted([path.parent.parent.name, path.parent.name])

        # Nothing processed twice: each file reached ingest and was rendered exactly once;
        # every lost answer was replayed from its Idempotency-Key instead.
        counters = httpx.get(f"{server.base}/readyz").json()["counters"]
        print("server counters:", counters)
        assert counters["files"] == N_IMAGES
        assert counters["renders"] == N_IMAGES
        assert counters["created"] == N_IMAGES
        assert counters["idempotent_replays"] > 0

        # A second run sends no file bytes: every file is found by its hash.
        before = len(proxy.seen)
        started = time.monotonic()
        second = run_import(tmp_path / "photos", proxy.url, "--json")
        print(f"second import: {time.monotonic() - started:.1f}s")
        assert second.returncode == 0, second.stdout + second.stderr[-3000:]
        report = json.loads(second.stdout)
        assert report == {
            "created": 0,
            "existing": N_IMAGES,
            "rejected": 0,
            "failed": 0,
            "skipped": N_IMAGES,
            "existing_tagged": 0,
            "existing_labelled": 0,
            "label_conflicts": 0,
            "conflicts": [],
            "problems": [],
        }
        rerun = proxy.seen[before:]
        # Files with folder tags and labels are looked up with GET (does the image have them
        # all already?), never sent again.
        assert {s.method for s in rerun} == {"GET"}
        assert sum(s.body_bytes for s in rerun) == 0
        assert httpx.get(f"{server.base}/readyz").json()["counters"]["files"] == N_IMAGES
    finally:
        proxy.stop()
