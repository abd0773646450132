"""?redirect=true: 307 to a SAS/presigned URL on Azure and S3; the bytes themselves elsewhere."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.services.azurite import Azurite
from tests.services.radosgw import Radosgw


def upload(client: TestClient, data: bytes) -> dict[str, Any]:
    r = client.post("/v1/images", files=[("file", ("cat.jpg", data, "image/jpeg"))])
    assert r.status_code == 201, r.text
    image: dict[str, Any] = r.json()["images"][0]
    return image


def assert_redirects_to_the_bytes(client: TestClient, data: bytes) -> dict[str, str]:
    """Check the redirects; return the signed URL's query parameters."""
    image = upload(client, data)
    original = client.get(f"{image['original']['url']}?redirect=true", follow_redirects=False)
    assert original.status_code == 307, original.text
    assert original.headers["cache-control"] == "private, no-store"
    fetched = httpx.get(original.headers["location"])  # no credentials: the URL is enough
    assert fetched.status_code == 200
    assert fetched.content == data
    assert fetched.headers["content-type"] == "image/jpeg"

    rendition_url = image["renditions"]["default"]["url"]
    proxied = client.get(rendition_url)
    rendition = client.get(f"{rendition_url}?redirect=1", follow_redirects=False)
    assert rendition.status_code == 307
    assert httpx.get(rendition.headers["location"]).content == proxied.content

    # Without the flag the API still serves the bytes itself.
    assert client.get(image["original"]["url"]).content == data
    missing = client.get(f"/v1/images/{'0' * 64}/original?redirect=true", follow_redirects=False)
    assert missing.status_code == 404
    query = parse_qs(urlsplit(original.headers["location"]).query)
    return {name: values[0] for name, values in query.items()}


@pytest.mark.azure
def test_azure_redirects_to_a_sas_url(
    make_client: Callable[..., TestClient], azurite: Azurite, read: Callable[[str], bytes]
) -> None:
    client = make_client(storage_url=azurite.url_for(azurite.new_container()))
    sas = assert_redirects_to_the_bytes(client, read("cat.jpg"))
    assert sas["sp"] == "r"  # read only
    expiry = datetime.fromisoformat(sas["se"].replace("Z", "+00:00"))
    lifetime = (expiry - datetime.now(UTC)).total_seconds()
    assert 240 < lifetime <= 300  # the default signed_url_ttl_s


@pytest.mark.s3
def test_s3_redirects_to_a_presigned_url(
    make_client: Callable[..., TestClient], radosgw: Radosgw, read: Callable[[str], bytes]
) -> None:
    client = make_client(storage_url=radosgw.url_for(radosgw.new_bucket()), signed_url_ttl_s=90)
    presigned = assert_redirects_to_the_bytes(client, read("cat.jpg"))
    assert presigned["X-Amz-Expires"] == "90"


@pytest.mark.parametrize("where", ["memory", "local"])
def test_stores_without_signing_serve_the_bytes(
    make_client: Callable[..., TestClient],
    read: Callable[[str], bytes],
    tmp_path: Path,
    where: str,
) -> None:
    url = "memory://" if where == "memory" else str(tmp_path / "blobs")
    client = make_client(storage_url=url)
    image = upload(client, read("cat.jpg"))
    r = client.get(f"{image['original']['url']}?redirect=true", follow_redirects=False)
    assert r.status_code == 200
    assert r.content == read("cat.jpg")
    r = client.get(f"{image['renditions']['default']['url']}?redirect=true")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


def test_a_bad_redirect_value_is_a_problem(make_client: Callable[..., TestClient]) -> None:
    r = make_client().get(f"/v1/images/{'0' * 64}/original?redirect=maybe")
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_parameter"
