"""GET /metrics: Prometheus text with request, ingest, scoring and refusal metrics."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def test_an_upload_moves_the_counters(client: TestClient, read: Callable[[str], bytes]) -> None:
    data = read("cat.jpg")
    before = samples(client)
    assert value(before, "imgest_upload_files_total", status="created", code="") == 0
    r = client.post("/v1/images", files=[("file", ("cat.jpg", data, "image/jpeg"))])
    assert r.status_code == 201
    image = r.json()["images"][0]["id"]
    assert client.get(f"/v1/images/{image}").status_code == 200
    bad = client.post("/v1/images", files=[("file", ("x.jpg", b"not an image", "image/jpeg"))])
    assert bad.status_code == 415
    after = samples(client)

    upload = {"method": "POST", "route": "/v1/images"}
    assert value(after, "imgest_http_requests_total", **upload, status="201") == 1
    assert value(after, "imgest_http_requests_total", **upload, status="415") == 1
    got = {"method": "GET", "route": "/v1/images/{image}"}
    assert value(after, "imgest_http_requests_total", **got, status="200") == 1
    assert value(after, "imgest_http_request_duration_seconds_count", **upload) == 2
    assert value(after, "imgest_upload_files_total", status="created", code="") == 1
    rejected = {"status": "rejected", "code": "unsupported_media_type"}
    assert value(after, "imgest_upload_files_total", **rejected) == 1
    assert value(after, "imgest_problems_total", code="unsupported_media_type") == 1
    assert value(after, "imgest_ingested_bytes_total") == len(data)
    assert value(after, "imgest_upload_body_bytes_total") > len(data)
    assert value(after, "imgest_render_seconds_count") == 2  # the bad file was sniffed too
    assert value(after, "imgest_score_seconds_count") == 1
    assert value(after, "imgest_store_seconds_count") == 1
    assert value(after, "imgest_scoring_batch_size_count") == 1
    assert value(after, "imgest_scoring_batch_size_sum") == 1
    assert value(after, "imgest_scoring_batch_size_bucket", le="1.0") == 1
    for gauge in ("imgest_uploads_active", "imgest_uploads_queued", "imgest_scoring_queue_depth"):
        assert value(after, gauge) == 0


def test_unmatched_paths_share_one_route_label(client: TestClient) -> None:
    for path in ("/nope", "/nope/again", "/v2/whatever"):
        assert client.get(path).status_code == 404
    after = samples(client)
    labels = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(after, "imgest_http_requests_total", **labels) == 3
    assert value(after, "imgest_problems_total", code="not_found") == 3


def test_apps_keep_their_own_numbers(make_client: Callable[..., TestClient]) -> None:
    one, two = make_client(), make_client()
    one.get("/healthz")
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    assert value(samples(one), "imgest_http_requests_total", **labels) == 1
    assert value(samples(two), "imgest_http_requests_total", **labels) == 0


def test_request_ids_are_echoed_or_made(client: TestClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    made = client.get("/healthz", headers={"X-Request-ID": "x" * 500}).headers["x-request-id"]
    assert len(made) == 32 and made != "x" * 500
    assert client.get("/healthz").headers["x-request-id"] != made
