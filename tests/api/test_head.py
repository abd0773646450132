"""HEAD /v1/images/{sha256}: ask whether bytes are stored before sending them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from fastapi.testclient import TestClient


def test_head_by_hash(client: TestClient, read: Callable[[str], bytes]) -> None:
    cat = read("cat.jpg")
    digest = hashlib.sha256(cat).hexdigest()
    assert client.head(f"/v1/images/{digest}").status_code == 404
    assert client.post("/v1/images", files=[("file", ("cat.jpg", cat))]).status_code == 201

    head = client.head(f"/v1/images/{digest}")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["imgest-original-length"] == str(len(cat))
    assert head.headers["imgest-original-type"] == "image/jpeg"
    got = client.get(f"/v1/images/{digest}")
    assert head.headers["content-length"] == str(len(got.content))
    assert got.headers["imgest-original-length"] == str(len(cat))
    assert got.json()["id"] == digest
    # Upper-case hex is the same id; anything else is simply not there.
    assert client.head(f"/v1/images/{digest.upper()}").status_code == 200
    assert client.head("/v1/images/not-a-hash").status_code == 404


def test_head_of_blobs_gives_length_and_etag(
    client: TestClient, read: Callable[[str], bytes]
) -> None:
    cat = read("cat.jpg")
    image = client.post("/v1/images", files=[("file", ("cat.jpg", cat))]).json()["images"][0]
    original = client.head(image["original"]["url"])
    assert original.status_code == 200 and original.content == b""
    assert original.headers["content-length"] == str(len(cat))
    assert original.headers["etag"] == f'"{image["id"]}"'
    assert original.headers["content-type"] == "image/jpeg"
    rendition = client.head(image["renditions"]["default"]["url"])
    assert rendition.status_code == 200
    assert rendition.headers["content-length"] == str(image["renditions"]["default"]["bytes"])
    assert client.head(f"/v1/images/{'0' * 64}/original").status_code == 404


def test_openapi_lists_head_without_duplicate_ids(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "head" in spec["paths"]["/v1/images/{image}"]
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
