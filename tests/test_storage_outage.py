"""Blob storage going away mid-upload under a real server: quick 503, no row; back: it works."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services.azurite import Azurite
from tests.services.imgest_server import Server
from tests.services.radosgw import Radosgw

# How long a 503 may take once storage is gone: timeouts and retries are bounded (the server
# runs with IMGEST_STORAGE_TIMEOUT_S=5 and the default 3 retries).
BOUND_S = 15.0
BOUNDARY = "imgest-outage-test"


@dataclass
class Outage:
    """A storage URL and how to take its server away and bring it back."""

    url: str
    stop: Callable[[], None]
    start: Callable[[], None]


@pytest.fixture(params=[pytest.param("azure", marks=pytest.mark.azure),
                        pytest.param("s3", marks=pytest.mark.s3)])  # fmt: skip
def outage(request: pytest.FixtureRequest) -> Iterator[Outage]:
    if request.param == "azure":
        azurite: Azurite = request.getfixturevalue("azurite")
        plan = Outage(azurite.url_for(azurite.new_container()), azurite.stop, azurite.start)
    else:
        rgw: Radosgw = request.getfixturevalue("radosgw")
        plan = Outage(rgw.url_for(rgw.new_bucket()), rgw.stop, rgw.start)
    try:
        yield plan
    finally:
        plan.start()  # the session's server must outlive this test


def multipart(name: str, data: bytes) -> tuple[bytes, bytes]:
    """The body of a one-file upload, split in two around the middle of the file."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    half = len(data) // 2
    return head + data[:half], data[half:] + tail


def post(base: str, body: Iterator[bytes] | bytes) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/images",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
        timeout=120,
    )


def test_storage_stopped_mid_upload(outage: Outage, tmp_path: Path, data_dir: Path) -> None:
    server = Server(
        tmp_path, env={"IMGEST_STORAGE_URL": outage.url, "IMGEST_STORAGE_TIMEOUT_S": "5"}
    )
    server.start()
    try:
        warm = (data_dir / "rocket.jpg").read_bytes()
        first, rest = multipart("rocket.jpg", warm)
        assert post(server.base, first + rest).status_code == 201  # connections are open

        cat = (data_dir / "cat.jpg").read_bytes()
        cat_id = hashlib.sha256(cat).hexdigest()
        first, rest = multipart("cat.jpg", cat)
        stopped_at: list[float] = []

        def body() -> Iterator[bytes]:
            yield first
            outage.stop()  # storage dies while the request body is still arriving
            stopped_at.append(time.monotonic())
            yield rest

        answer = post(server.base, body())
        took = time.monotonic() - stopped_at[0]
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "storage_unavailable"
        assert answer.headers["retry-after"]
        assert took < BOUND_S, f"503 took {took:.1f} s"
        assert httpx.get(f"{server.base}/v1/images/{cat_id}").status_code == 404  # no row

        outage.start()
        again = post(server.base, b"".join(multipart("cat.jpg", cat)))
        assert again.status_code == 201, again.text
        image = again.json()["images"][0]
        assert image["id"] == cat_id
        assert httpx.get(f"{server.base}{image['original']['url']}").content == cat
    finally:
        server.stop()
