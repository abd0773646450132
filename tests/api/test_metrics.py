"""GET /metrics: Prometheus text with request, ingest, scoring and refusal metrics."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from imgest.metrics import Metrics


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
    longest = ("A-Za-z0-9._:@/+=" * 8)[:128]  # up to 128 of A-Za-z0-9._:@/+=-
    assert client.get("/healthz", headers={"X-Request-ID": longest}).headers["x-request-id"] == (
        longest
    )
    for odd in (longest + "x", "a b", "a\\b", "a;b", "a%0ab"):
        answered = client.get("/healthz", headers={"X-Request-ID": odd}).headers["x-request-id"]
        assert answered != odd and len(answered) == 32, odd


def test_odd_methods_cannot_grow_the_label_set(client: TestClient) -> None:
    """Issue 14 item 2: each unique method name was a new label (and its 17 histogram series)."""
    first = len(client.get("/metrics").content)
    for i in range(300):
        method = f"X{i:04d}" + "M" * 2000  # unique, 2 KB, a valid HTTP token
        assert client.request(method, "/v1/images").status_code == 405
        assert client.request(method, "/no/such/path").status_code == 404
    scrape = client.get("/metrics").content
    # 600 requests add two route label sets of one `method="other"` each, not 600 new series.
    assert len(scrape) - first < 8 * 1024, f"/metrics grew from {first} to {len(scrape)} bytes"
    methods = {
        labels["method"]
        for (name, pairs), _ in samples(client).items()
        if name.startswith("imgest_http_")
        for labels in [dict(pairs)]
    }
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    other = {"method": "other", "route": "/v1/images", "status": "405"}
    assert value(samples(client), "imgest_http_requests_total", **other) == 300


@pytest.mark.anyio
async def test_a_scrape_does_not_block_the_event_loop(
    make_client: Callable[..., TestClient],
) -> None:
    """Issue 14 item 2: rendering a big exposition on the loop stalled every other request."""
    app = make_client().app
    exported: Metrics = app.state.metrics  # type: ignore[attr-defined]
    for i in range(30_000):  # a registry big enough that rendering it takes a while
        exported.problems.labels(code=f"c{i}").inc()
    started = time.perf_counter()
    exported.exposition()
    render = time.perf_counter() - started
    assert render > 0.1, f"the exposition took only {render:.3f} s: make the registry bigger"

    gaps: list[float] = []
    done = anyio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await anyio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    transport = httpx.ASGITransport(app=app)
    # The 30,000 series make a heap whose full garbage collections pause every thread; freeze
    # it so that what is measured is the scrape, not the collector.
    gc.collect()
    gc.freeze()
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://localhost") as http,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(tick)
            await anyio.sleep(0.02)
            r = await http.get("/metrics")
            done.set()
    finally:
        gc.unfreeze()
    assert r.status_code == 200 and b'code="c29999"' in r.content
    assert max(gaps) < render / 3, f"loop stalled {max(gaps):.3f} s (render {render:.3f} s)"


def test_the_metrics_security_md_lists_are_the_ones_exported(
    client: TestClient, read: Callable[[str], bytes]
) -> None:
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    section = doc.split("## Metrics and logs", 1)[1].split("\n## ", 1)[0]
    named = {
        name.removesuffix("_total"): labels
        for name, labels in re.findall(r"`(imgest_\w+)(?:\{([\w,]+)\})?`", section)
    }
    r = client.post("/v1/images", files=[("file", ("cat.jpg", read("cat.jpg"), "image/jpeg"))])
    assert r.status_code == 201
    assert client.get("/nope").status_code == 404  # a refusal, counted by code
    families = {
        f.name: f
        for f in text_string_to_metric_families(client.get("/metrics").text)
        if f.name.startswith("imgest_") and not f.name.endswith("_created")
    }
    assert set(named) == set(families)
    for name, labels in named.items():
        if labels:  # the label names the page gives
            seen = {label for s in families[name].samples for label in s.labels} - {"le"}
            assert seen == set(labels.split(",")), name
