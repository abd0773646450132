"""Two `imgest serve` processes on one PostgreSQL catalog and one Azure blob container (Azurite).

Replicas see each other's uploads; the same bytes racing on both yield one image; a stopped
database answers 503 without half-written records and comes back without a restart; a
`kill -9` during uploads loses nothing that was acknowledged and leaves `fsck` clean.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgest.catalog.repo import Catalog
from imgest.cli import app
from tests.services.azurite import Azurite
from tests.services.imgest_server import Server, upload_until_killed
from tests.services.postgres import PostgresCluster

pytestmark = [pytest.mark.postgres, pytest.mark.azure]


@dataclass
class Replicas:
    """Two servers sharing one catalog and one blob store."""

    a: Server
    b: Server
    catalog_url: str
    storage_url: str

    def cli(self, *args: str) -> tuple[int, str]:
        """Run `imgest <args>` on the shared catalog and store; (exit code, output)."""
        result = CliRunner().invoke(
            app, [*args, "--storage", self.storage_url, "--catalog", self.catalog_url]
        )
        return result.exit_code, result.stdout

    def count_rows(self) -> int:
        catalog = Catalog.open(self.catalog_url, migrate_schema=False)
        try:
            return sum(len(page) for page in _image_pages(catalog))
        finally:
            catalog.close()


def _image_pages(catalog: Catalog) -> Iterator[list[str]]:
    for refs in catalog.blob_refs():
        yield sorted({r.image_id for r in refs})


@pytest.fixture(scope="module")
def replicas(
    postgres: PostgresCluster, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    if not postgres.running():
        postgres.start()
    database = postgres.create_database()
    catalog_url = postgres.url(database)
    storage_url = azurite.url_for(azurite.new_container())
    env = {
        "IMGEST_CATALOG_URL": catalog_url,
        "IMGEST_STORAGE_URL": storage_url,
        "IMGEST_WORKERS": "2",
        "IMGEST_INFERENCE_THREADS": "1",
        "IMGEST_CATALOG_CONNECT_TIMEOUT_S": "2",
    }
    a = Server(tmp_path_factory.mktemp("replica-a"), env=env)
    b = Server(tmp_path_factory.mktemp("replica-b"), env=env)
    a.start()
    try:
        b.start()
        try:
            yield Replicas(a, b, catalog_url, storage_url)
        finally:
            b.stop()
    finally:
        a.stop()


def photo(seed: int, size: tuple[int, int] = (480, 320)) -> bytes:
    """A small JPEG of smooth noise, unique per seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def post(http: httpx.Client, base: str, data: bytes, name: str = "p.jpg") -> httpx.Response:
    return http.post(f"{base}/v1/images", files=[("file", (name, data, "image/jpeg"))])


def test_an_upload_to_either_is_visible_downloadable_and_deletable_on_the_other(
    replicas: Replicas,
) -> None:
    with httpx.Client(timeout=60) as http:
        for seed, (writer, reader) in enumerate(
            [(replicas.a, replicas.b), (replicas.b, replicas.a)]
        ):
            data = photo(1000 + seed)
            r = post(http, writer.base, data, f"{seed}.jpg")
            assert r.status_code == 201, r.text
            item = r.json()["images"][0]
            got = http.get(f"{reader.base}/v1/images/{item['id']}")
            assert got.status_code == 200 and got.json()["filename"] == f"{seed}.jpg"
            listed = http.get(f"{reader.base}/v1/images").json()["items"]
            assert item["id"] in {i["id"] for i in listed}
            assert http.get(f"{reader.base}{item['original']['url']}").content == data
            rendition = http.get(f"{reader.base}{item['renditions']['default']['url']}")
            assert rendition.status_code == 200
            assert rendition.content[:2] == b"\xff\xd8"
            assert http.delete(f"{reader.base}/v1/images/{item['id']}").status_code == 204
            for server in (writer, reader):
                gone = http.get(f"{server.base}/v1/images/{item['id']}/original")
                assert gone.status_code == 404
    code, out = replicas.cli("fsck", "--deep", "--json")
    assert code == 0 and json.loads(out)["ok"] is True, out
    code, out = replicas.cli("gc", "--grace", "0", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["scanned"] == 0, out  # the deletes took the blobs too


def test_near_duplicates_and_similar_images_across_replicas(
    replicas: Replicas, data_dir: Path
) -> None:
    """Issue 17 on PostgreSQL: an upload to one replica finds the near-duplicate another
    replica stored (the embeddings live in the shared catalog), and /similar agrees on both."""
    cat = (data_dir / "cat.jpg").read_bytes()
    original = Image.open(data_dir / "cat.jpg").convert("RGB")
    out = io.BytesIO()
    original.resize((original.width * 3 // 4, original.height * 3 // 4)).save(
        out, "JPEG", quality=60
    )
    with httpx.Client(timeout=60) as http:
        r = post(http, replicas.a.base, cat, "cat.jpg")
        assert r.status_code == 201, r.text
        cat_id = r.json()["images"][0]["id"]
        r = post(http, replicas.b.base, out.getvalue(), "copy.jpg")
        assert r.status_code == 201, r.text
        copy = r.json()["images"][0]
        assert [d["id"] for d in copy["near_duplicates"]] == [cat_id]
        for server in (replicas.a, replicas.b):
            similar = http.get(f"{server.base}/v1/images/{cat_id}/similar", params={"k": 1})
            assert similar.status_code == 200, similar.text
            assert [i["id"] for i in similar.json()["items"]] == [copy["id"]]
        for image_id in (cat_id, copy["id"]):
            assert http.delete(f"{replicas.a.base}/v1/images/{image_id}").status_code == 204


def test_same_bytes_racing_on_two_processes_make_one_image(replicas: Replicas) -> None:
    rounds = 8
    answers: list[list[tuple[int, str, str]]] = []
    for n in range(rounds):
        data = photo(2000 + n)
        start = threading.Barrier(2)
        got: list[tuple[int, str, str]] = []

        def send(
            server: Server,
            data: bytes = data,
            start: threading.Barrier = start,
            got: list[tuple[int, str, str]] = got,
        ) -> None:
            with httpx.Client(timeout=60) as http:
                start.wait()
                r = post(http, server.base, data)
                item = r.json()["images"][0] if r.status_code < 300 else {}
                got.append((r.status_code, item.get("status", r.text), item.get("id", "")))

        threads = [threading.Thread(target=send, args=(s,)) for s in (replicas.a, replicas.b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        answers.append(sorted(got))
    for got in answers:
        (s1, st1, id1), (s2, st2, id2) = got
        assert (s1, st1, s2, st2) == (200, "existing", 201, "created"), got
        assert id1 == id2
    assert replicas.count_rows() == rounds
    code, out = replicas.cli("fsck")
    assert code == 0, out


def test_stopped_database_answers_503_and_recovers_without_restart(
    replicas: Replicas, postgres: PostgresCluster
) -> None:
    """Uploads in flight when PostgreSQL stops get 503 catalog_unavailable, quickly, and leave
    no row; their blobs are orphans that gc removes; once it is back, uploads work again."""
    before = replicas.count_rows()
    results: list[tuple[int, str, float]] = []
    stop = threading.Event()

    def uploader(worker: int) -> None:
        with httpx.Client(timeout=60) as http:
            n = 0
            while not stop.is_set():
                started = time.monotonic()
                r = post(http, replicas.a.base, photo(3000 + worker * 1000 + n, (1600, 1200)))
                code = r.json().get("code", "") if r.status_code == 503 else ""
                results.append((r.status_code, code, time.monotonic() - started))
                n += 1

    workers = [threading.Thread(target=uploader, args=(w,)) for w in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        postgres.stop("fast")
        time.sleep(3.0)
        with httpx.Client(timeout=30) as http:
            ready = http.get(f"{replicas.b.base}/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["catalog"].startswith("unavailable")
    finally:
        stop.set()
        for w in workers:
            w.join()
        if not postgres.running():
            postgres.start()
    statuses = {(status, code) for status, code, _ in results}
    assert statuses <= {(201, ""), (503, "catalog_unavailable")}, results
    assert (503, "catalog_unavailable") in statuses
    slowest_503 = max(t for status, _, t in results if status == 503)
    assert slowest_503 < 10, results
    created = sum(1 for status, _, _ in results if status == 201)

    # Back, without restarting either server: both serve and record again.
    with httpx.Client(timeout=60) as http:
        for server in (replicas.a, replicas.b):
            deadline = time.monotonic() + 20
            while http.get(f"{server.base}/readyz").status_code != 200:
                assert time.monotonic() < deadline, "catalog not back"
                time.sleep(0.2)
            r = post(http, server.base, photo(hash(server.base) % 10_000 + 9000))
            assert r.status_code == 201, r.text
    assert replicas.count_rows() == before + created + 2  # no row for any 503

    code, out = replicas.cli("gc", "--grace", "0", "--json")
    assert code == 0, out
    swept = json.loads(out)
    print(f"outage: {created} created, {len(results) - created} answered 503; gc: {swept}")
    # An upload that got 503 stored its blobs under a write lease it could not drop while the
    # catalog was down: gc leaves those blobs until the lease expires (IMGEST_CATALOG_LEASE_TTL_S)
    # and deletes every other orphan now.
    assert swept["deleted"] + swept["leased"] == swept["scanned"] - swept["referenced"], swept
    code, out = replicas.cli("gc", "--grace", "0", "--dry-run", "--json")
    again = json.loads(out)
    assert code == 0 and again["deleted"] == 0, out  # every unleased orphan went
    assert again["leased"] == swept["leased"], out
    assert again["referenced"] == 2 * replicas.count_rows()
    assert again["scanned"] == again["referenced"] + again["leased"], out
    code, out = replicas.cli("fsck", "--deep")
    assert code == 0, out


def test_kill_9_during_uploads_loses_no_acknowledged_image_and_fsck_is_clean(
    replicas: Replicas,
) -> None:
    acked = upload_until_killed(
        replicas.a, lambda worker, n: photo(50_000 + worker * 1000 + n), acked_before_kill=16
    )

    with httpx.Client(timeout=60) as http:
        for image_id, data in acked.items():  # the other replica serves them at once
            assert http.get(f"{replicas.b.base}/v1/images/{image_id}/original").content == data
        replicas.a.start()
        for image_id, data in acked.items():
            assert http.get(f"{replicas.a.base}/v1/images/{image_id}/original").content == data
    code, out = replicas.cli("fsck", "--deep")
    assert code == 0, out
    code, out = replicas.cli("gc", "--grace", "0", "--json")  # in-flight uploads' leftovers
    assert code == 0, out
    code, out = replicas.cli("fsck", "--deep", "--json")
    assert code == 0 and json.loads(out)["images"] >= len(acked), out
