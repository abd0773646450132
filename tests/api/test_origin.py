"""Allowed hosts and cross-origin writes (issue 14 item 7): one ASGI layer over every route.

A `Host` the server does not answer to is 400 `host_not_allowed` (DNS rebinding), and a
browser's state-changing request from another origin is 403 `cross_origin_refused` (any web
page could otherwise plant, relabel or delete images). The suite's clients allow the
TestClient's `testserver` explicitly; these tests ask for the production default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

CAT = "cat.jpg"
NO_IMAGE = "0" * 64


@pytest.fixture
def default(make_client: Callable[..., TestClient]) -> TestClient:
    """An app with the default allowed hosts (loopback names and the bind host)."""
    return make_client(allowed_hosts=())


def files(read: Callable[[str], bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (CAT, read(CAT), "image/jpeg"))]


def refused(r: Any, code: str, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == code and problem["detail"], problem
    assert "x-request-id" in r.headers  # refusals are observed (logged, counted) too


# Every kind of route: API, UI pages and static files, health, metrics, unmatched paths.
EVERYWHERE = [
    ("GET", "/v1/images"),
    ("POST", "/v1/images"),
    ("DELETE", f"/v1/images/{NO_IMAGE}"),
    ("PATCH", f"/v1/images/{NO_IMAGE}"),
    ("OPTIONS", "/v1/images"),
    ("FOO", "/v1/images"),
    ("GET", "/"),
    ("GET", "/gallery"),
    ("GET", f"/images/{NO_IMAGE}"),
    ("GET", "/ui/static/ui.css"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/no/such/path"),
]


@pytest.mark.parametrize(("method", "path"), EVERYWHERE)
def test_a_foreign_host_is_refused_on_every_route(
    default: TestClient, read: Callable[[str], bytes], method: str, path: str
) -> None:
    body = {"files": files(read)} if method == "POST" else {}
    r = default.request(method, f"http://attacker.example{path}", **body)
    refused(r, "host_not_allowed", 400)
    assert default.get("http://127.0.0.1:8000/v1/images").json()["items"] == []


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8000",
        "LOCALHOST.",
        "127.0.0.1",
        "127.0.0.1:8000",
        "127.9.9.9",
        "[::1]",
        "[::1]:8000",
        "localhost.localdomain",
        "ip6-localhost",
    ],
)
def test_loopback_names_are_allowed_by_default(default: TestClient, host: str) -> None:
    assert default.get("/healthz", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "localhost.attacker.example",
        "127.0.0.1.nip.io",
        "10.0.0.1",
        "testserver",
        "[::2]:8000",
        "",
        "a b",
        "[::1",
    ],
)
def test_other_hosts_are_refused_by_default(default: TestClient, host: str) -> None:
    refused(default.get("/healthz", headers={"Host": host}), "host_not_allowed", 400)


def test_configured_public_and_bind_hosts_are_allowed(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(
        allowed_hosts=["img.example.com"],
        public_url="https://cdn.example.org/imgest",
        host="192.0.2.7",
    )
    for host in (
        "img.example.com",
        "IMG.example.com:443",
        "cdn.example.org",
        "192.0.2.7:8000",
        "localhost:8000",
    ):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
    for host in ("example.com", "x.img.example.com", "example.org"):
        refused(client.get("/healthz", headers={"Host": host}), "host_not_allowed", 400)


def test_a_star_allows_any_host(make_client: Callable[..., TestClient]) -> None:
    client = make_client(allowed_hosts=["*"])
    assert client.get("http://attacker.example/healthz").status_code == 200


def test_the_host_check_comes_before_auth(make_client: Callable[..., TestClient]) -> None:
    secured = make_client(auth="keys", allowed_hosts=())
    refused(secured.get("http://attacker.example/v1/images"), "host_not_allowed", 400)
    assert secured.get("http://localhost/v1/images").status_code == 401


def test_refusals_are_counted_by_code(default: TestClient) -> None:
    default.get("http://attacker.example/v1/images")
    default.post("http://localhost/v1/images", headers={"Origin": "https://evil.example"})
    scrape = default.get("http://localhost/metrics").text
    assert 'imgest_problems_total{code="host_not_allowed"} 1.0' in scrape
    assert 'imgest_problems_total{code="cross_origin_refused"} 1.0' in scrape


# --- cross-origin writes --------------------------------------------------------------------

FOREIGN = [
    "https://evil.example",
    "http://testserver:8080",
    "https://testserver.evil.example",
    "null",
]


@pytest.mark.parametrize("origin", FOREIGN)
def test_a_cross_origin_upload_is_refused_and_plants_nothing(
    client: TestClient, read: Callable[[str], bytes], origin: str
) -> None:
    r = client.post(
        "/v1/images", files=files(read), data={"label": "false"}, headers={"Origin": origin}
    )
    refused(r, "cross_origin_refused", 403)
    assert client.get("/v1/images").json()["items"] == []


def test_cross_origin_relabel_and_delete_are_refused(
    client: TestClient, read: Callable[[str], bytes]
) -> None:
    image = client.post("/v1/images", files=files(read)).json()["images"][0]["id"]
    evil = {"Origin": "https://evil.example"}
    refused(
        client.patch(f"/v1/images/{image}", json={"label": "dog"}, headers=evil),
        "cross_origin_refused",
        403,
    )
    refused(client.delete(f"/v1/images/{image}", headers=evil), "cross_origin_refused", 403)
    refused(client.request("FOO", f"/v1/images/{image}", headers=evil), "cross_origin_refused", 403)
    kept = client.get(f"/v1/images/{image}")
    assert kept.status_code == 200 and kept.json()["label"] is None


def test_a_cross_site_fetch_without_origin_is_refused(
    client: TestClient, read: Callable[[str], bytes]
) -> None:
    for site in ("cross-site", "same-site"):
        r = client.post("/v1/images", files=files(read), headers={"Sec-Fetch-Site": site})
        refused(r, "cross_origin_refused", 403)
    assert client.get("/v1/images").json()["items"] == []


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, the Python client: no Origin
        {"Origin": "http://testserver"},  # the web UI's own form and fetches
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed by the user
    ],
)
def test_same_origin_and_non_browser_writes_are_served(
    client: TestClient, read: Callable[[str], bytes], headers: dict[str, str]
) -> None:
    assert client.post("/v1/images", files=files(read), headers=headers).status_code == 201


def test_the_ui_on_its_loopback_origin_can_upload_and_relabel(
    default: TestClient, read: Callable[[str], bytes]
) -> None:
    base = "http://127.0.0.1:8000"
    same = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
    r = default.post(f"{base}/v1/images", files=files(read), headers=same)
    assert r.status_code == 201, r.text
    image = r.json()["images"][0]["id"]
    r = default.patch(f"{base}/v1/images/{image}", json={"label": "cat"}, headers=same)
    assert r.status_code == 200 and r.json()["label"] == "cat"


def test_configured_cors_and_public_origins_may_write(
    make_client: Callable[..., TestClient], read: Callable[[str], bytes]
) -> None:
    client = make_client(cors_origins=["https://app.example"], public_url="https://img.example.com")
    for origin in ("https://app.example", "https://img.example.com"):
        headers = {"Origin": origin, "Sec-Fetch-Site": "cross-site"}
        assert client.post("/v1/images", files=files(read), headers=headers).status_code in (
            200,
            201,
        ), origin
    r = client.post("/v1/images", files=files(read), headers={"Origin": "https://app.example.org"})
    refused(r, "cross_origin_refused", 403)


def test_cross_origin_reads_are_not_this_layers_business(client: TestClient) -> None:
    # A page elsewhere may show an image (<img src>) or send a GET; the browser keeps it from
    # reading the answer unless CORS allows that origin.
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert client.get("/v1/images", headers=evil).status_code == 200
    assert client.get("/gallery", headers=evil).status_code == 200


def test_the_policy_edges() -> None:
    from imgest.api.origin import HostPolicy
    from imgest.config import load_settings

    wildcard_bind = HostPolicy.from_settings(load_settings(host="0.0.0.0", insecure=True))
    assert not wildcard_bind.host_allowed("0.0.0.0:8000")  # not a name anyone browses to
    assert wildcard_bind.host_allowed(None)  # HTTP/1.0 without Host: not a browser
    v6 = HostPolicy.from_settings(load_settings(host="::1"))
    assert v6.host_allowed("[::1]:8000") and not v6.host_allowed("[::]:8000")
    any_origin = HostPolicy.from_settings(load_settings(cors_origins=["*"]))
    assert any_origin.write_allowed("https://anything.example", "cross-site", "localhost")
    assert not any_origin.host_allowed("anything.example")  # CORS does not widen the hosts
