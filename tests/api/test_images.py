"""Read API: get, list with filters and pages, delete, health, OpenAPI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from imgest.storage.memory import MemoryStore


def put(client: TestClient, data: bytes, name: str, **fields: Any) -> dict[str, Any]:
    r = client.post("/v1/images", files=[("file", (name, data, "image/jpeg"))], data=fields)
    assert r.status_code == 201, r.text
    image: dict[str, Any] = r.json()["images"][0]
    return image


@pytest.fixture
def corpus(client: TestClient, data_dir: Path) -> list[dict[str, Any]]:
    return [
        put(client, (data_dir / "cat.jpg").read_bytes(), "cat.jpg", tag="pets"),
        put(client, (data_dir / "coffee.jpg").read_bytes(), "coffee.jpg", tag="food,drinks"),
        put(client, (data_dir / "rocket.jpg").read_bytes(), "rocket.jpg"),
    ]


def test_list_newest_first_and_paginated(client: TestClient, corpus: list[dict[str, Any]]) -> None:
    ids = [i["id"] for i in corpus]
    page = client.get("/v1/images", params={"limit": 2}).json()
    assert [i["id"] for i in page["items"]] == ids[::-1][:2]
    rest = client.get("/v1/images", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [i["id"] for i in rest["items"]] == ids[:1]
    assert rest["next_cursor"] is None


def test_list_filters(client: TestClient, corpus: list[dict[str, Any]]) -> None:
    cat, coffee, _ = corpus
    assert [
        i["id"] for i in client.get("/v1/images", params={"tag": "drinks"}).json()["items"]
    ] == [coffee["id"]]
    label = cat["predictions"][0]["top"][0]["label"]
    by_label = client.get("/v1/images", params={"label": label}).json()["items"]
    assert cat["id"] in [i["id"] for i in by_label]
    assert coffee["id"] not in [i["id"] for i in by_label]
    future = client.get("/v1/images", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future["items"] == []
    everything = client.get("/v1/images", params={"until": "2999-01-01T00:00:00Z"}).json()
    assert len(everything["items"]) == 3


def test_list_rejects_bad_parameters(client: TestClient) -> None:
    for params in ({"limit": 0}, {"limit": 100000}, {"since": "yesterday"}, {"cursor": "@@@"}):
        r = client.get("/v1/images", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["code"] == "invalid_parameter"


def test_unknown_and_malformed_ids_are_404(client: TestClient) -> None:
    for path in (
        "/v1/images/" + "0" * 64,
        "/v1/images/nothex",
        "/v1/images/../../etc/passwd",
        "/v1/images/" + "0" * 64 + "/original",
        "/v1/images/" + "0" * 64 + "/renditions/default",
    ):
        r = client.get(path)
        assert r.status_code == 404, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"


def test_unknown_pipeline_is_404(client: TestClient, corpus: list[dict[str, Any]]) -> None:
    r = client.get(f"/v1/images/{corpus[0]['id']}/renditions/nope")
    assert r.status_code == 404 and r.json()["code"] == "pipeline_not_found"


def test_delete_removes_rows_and_blobs(client: TestClient, corpus: list[dict[str, Any]]) -> None:
    store = client.app.state.store.inner  # type: ignore[attr-defined]
    assert isinstance(store, MemoryStore)
    target = corpus[0]["id"]
    assert any(target in p for p in store._blobs)
    assert client.delete(f"/v1/images/{target}").status_code == 204
    assert client.get(f"/v1/images/{target}").status_code == 404
    assert not any(target in p for p in store._blobs)
    assert client.delete(f"/v1/images/{target}").status_code == 404
    assert len(client.get("/v1/images").json()["items"]) == 2


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"storage": "ok", "catalog": "ok", "model": "ok"}


def test_readyz_names_a_broken_catalog(client: TestClient) -> None:
    catalog = client.app.state.catalog  # type: ignore[attr-defined]
    catalog.engine.dispose()
    # a database file in a directory that does not exist cannot be opened
    catalog.engine = create_engine("sqlite:////nonexistent-imgest-dir/catalog.db")
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["catalog"] == "unavailable: catalog_unavailable"
    assert r.json()["checks"]["storage"] == "ok"


def test_openapi_and_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/images" in spec["paths"]
    assert "multipart/form-data" in spec["paths"]["/v1/images"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_unknown_route_is_problem_json(client: TestClient) -> None:
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_if_none_match_compares_whole_entity_tags(
    client: TestClient, corpus: list[dict[str, Any]]
) -> None:
    """RFC 9110 13.1.2: `*` and a list of (weak or strong) tags match; a header holding the
    tag only inside a longer one (once a substring test) does not."""
    image = corpus[0]
    for url in (image["original"]["url"], image["renditions"]["default"]["url"]):
        etag = client.get(url).headers["etag"]
        matching = ["*", etag, f"W/{etag}", f'"other", {etag}', f'W/"x",W/{etag}']
        for value in matching:
            assert client.get(url, headers={"If-None-Match": value}).status_code == 304, value
        for value in [etag + etag, f'"x{etag[1:]}', etag[1:-1], '"', "", etag[:-1] + '-1"']:
            r = client.get(url, headers={"If-None-Match": value})
            assert r.status_code == 200 and r.content, value
