"""Idempotency-Key on POST /v1/images: replay without new work, 422 on reuse, 409, expiry."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from imgest.api.idempotency import fingerprint
from imgest.api.multipart import Form
from imgest.app import create_app
from imgest.catalog.models import IdempotencyRow
from imgest.catalog.repo import Catalog
from imgest.config import load_settings
from imgest.ingest import Upload
from imgest.scoring.model import Model
from imgest.storage.base import StoreUnavailableError


def post(
    client: TestClient, data: bytes, key: str | bytes | None, name: str = "cat.jpg", **fields: Any
) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(
        "/v1/images", files=[("file", (name, data, "image/jpeg"))], data=fields, headers=headers
    )


def counters(client: TestClient) -> dict[str, int]:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    values: dict[str, int] = ready.json()["counters"]
    return values


def key_rows(client: TestClient) -> int:
    catalog: Catalog = client.app.state.catalog  # type: ignore[attr-defined]
    with catalog.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(IdempotencyRow)).scalar_one())


def test_same_key_same_request_replays_the_first_answer_without_work(
    client: TestClient, read: Callable[[str], bytes]
) -> None:
    cat = read("cat.jpg")
    first = post(client, cat, "k-1", description="kitchen", tag="pets")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    work = counters(client)
    assert work["files"] == 1 and work["renders"] == 1 and work["created"] == 1

    again = post(client, cat, "k-1", description="kitchen", tag="pets")  # new multipart boundary
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    after = counters(client)
    assert after == {**work, "idempotent_replays": 1}

    # The same bytes without a key are ingested again (and found existing): that is work.
    plain = post(client, cat, None, description="kitchen", tag="pets")
    assert plain.status_code == 200 and plain.json()["images"][0]["status"] == "existing"
    assert counters(client)["files"] == 2


def test_sf_string_key_is_the_same_key(client: TestClient, read: Callable[[str], bytes]) -> None:
    cat = read("cat.jpg")
    assert post(client, cat, "abc").status_code == 201
    replay = post(client, cat, '"abc"')
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"


def test_same_key_different_request_is_422(
    client: TestClient, read: Callable[[str], bytes]
) -> None:
    assert post(client, read("cat.jpg"), "k-2", description="a").status_code == 201
    for data, fields in (
        (read("coffee.jpg"), {"description": "a"}),  # other bytes
        (read("cat.jpg"), {"description": "b"}),  # same bytes, other field
    ):
        r = post(client, data, "k-2", **fields)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "idempotency_key_reused"
    assert counters(client)["files"] == 1


def test_same_key_with_other_query_parameters_is_422(
    client: TestClient, read: Callable[[str], bytes]
) -> None:
    # Issue 14 item 10: the fingerprint ignored the query, so a retry with ?model= (score
    # with another model) replayed the first answer as if it had been done.
    cat = read("cat.jpg")
    files = [("file", ("cat.jpg", cat, "image/jpeg"))]
    headers = {"Idempotency-Key": "k-q"}
    first = client.post("/v1/images?x=1&y=2", files=files, headers=headers)
    assert first.status_code == 201, first.text
    same = client.post("/v1/images?y=2&x=1", files=files, headers=headers)  # other order
    assert same.headers.get("idempotent-replayed") == "true"
    for query in ("?x=1&y=2&model=efficientnet-lite0", "?x=1", "?x=1&y=3"):
        r = client.post(f"/v1/images{query}", files=files, headers=headers)
        assert r.status_code == 422, (query, r.text)
        assert r.json()["code"] == "idempotency_key_reused"


def test_the_fingerprint_covers_the_query() -> None:
    form = Form()
    assert fingerprint(form, "model=a") != fingerprint(form, "model=b") != fingerprint(form)
    assert fingerprint(form, "a=1&b=") == fingerprint(form, "b=&a=1")


def test_final_4xx_answers_are_stored_and_replayed(
    client: TestClient, read: Callable[[str], bytes]
) -> None:
    text = read("not-image.txt")
    first = post(client, text, "k-3", name="notes.jpg")
    assert first.status_code == 415 and first.json()["code"] == "unsupported_media_type"
    renders = counters(client)["renders"]
    again = post(client, text, "k-3", name="notes.jpg")
    assert (again.status_code, again.content) == (415, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert counters(client)["renders"] == renders


def test_a_5xx_releases_the_key_so_a_retry_does_the_work(
    client: TestClient, read: Callable[[str], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = client.app.state.store.inner  # type: ignore[attr-defined]
    healthy_put = store.put

    async def broken_put(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("disk on fire")

    monkeypatch.setattr(store, "put", broken_put)
    failed = post(client, read("cat.jpg"), "k-4")
    assert failed.status_code == 503 and failed.json()["code"] == "storage_unavailable"
    assert key_rows(client) == 0
    monkeypatch.setattr(store, "put", healthy_put)
    retried = post(client, read("cat.jpg"), "k-4")
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers


@pytest.mark.parametrize(
    "key",
    ["", " ", "x" * 256, "ключ".encode(), b"caf\xe9", "a\tb"],
    ids=["empty", "blank", "too-long", "utf8", "latin1", "control"],
)
def test_malformed_keys_are_400(
    client: TestClient, read: Callable[[str], bytes], key: str | bytes
) -> None:
    r = post(client, read("cat.jpg"), key)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "idempotency_key_invalid"
    assert counters(client)["files"] == 0


def test_a_key_in_flight_elsewhere_is_409(client: TestClient, read: Callable[[str], bytes]) -> None:
    cat = read("cat.jpg")
    assert post(client, cat, "k-5").status_code == 201
    gate = client.app.state.idempotency  # type: ignore[attr-defined]
    # Another replica has claimed a key and is still working on it.
    claim = gate.keys.claim("", "k-6", "some-fingerprint", datetime.now(UTC))
    assert claim.outcome == "acquired"
    r = post(client, cat, "k-6")
    assert r.status_code == 422  # a different request under that key
    # The same request as the one in flight: wait and retry.
    form = Form(
        files=[Upload(cat, hashlib.sha256(cat).hexdigest(), "cat.jpg", "image/jpeg", len(cat))]
    )
    gate.keys.claim("", "k-7", fingerprint(form), datetime.now(UTC))
    busy = post(client, cat, "k-7")
    assert busy.status_code == 409, busy.text
    assert busy.json()["code"] == "idempotency_key_in_flight"


def test_keys_expire_and_are_purged(
    make_client: Callable[..., TestClient], read: Callable[[str], bytes]
) -> None:
    client = make_client(idempotency_ttl_s=0.5)
    assert post(client, read("cat.jpg"), "k-8").status_code == 201
    assert key_rows(client) == 1
    time.sleep(0.6)
    # Expired: the key is free again, even for other content.
    r = post(client, read("coffee.jpg"), "k-8")
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    time.sleep(0.6)
    gate = client.app.state.idempotency  # type: ignore[attr-defined]
    gate._last_purge = 0.0  # the next request runs the lazy purge
    assert post(client, read("rocket.jpg"), "k-9").status_code == 201
    assert key_rows(client) == 1  # k-8 purged, k-9 stored


def test_replicas_share_keys(tmp_path: Path, model: Model, read: Callable[[str], bytes]) -> None:
    settings = load_settings(
        storage_url=f"{tmp_path / 'blobs'}",
        catalog_url=f"sqlite:///{tmp_path / 'c.db'}",
        allowed_hosts=["testserver"],  # the TestClient's Host
    )
    with (
        TestClient(create_app(settings, model=model)) as a,
        TestClient(create_app(settings, model=model)) as b,
    ):
        first = post(a, read("cat.jpg"), "shared")
        second = post(b, read("cat.jpg"), "shared")
        assert first.status_code == 201
        assert (second.status_code, second.content) == (201, first.content)
        assert second.headers["idempotent-replayed"] == "true"
        assert counters(b)["files"] == 0


def test_concurrent_retries_with_one_key_do_the_work_once(
    client: TestClient, encode: Callable[..., bytes]
) -> None:
    rng = np.random.default_rng(3)
    big = encode(Image.fromarray(rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)), "JPEG")
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post(client, big, "same-key"), range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 409}, [a.text for a in answers]
    fresh = [a for a in answers if a.status_code == 201 and "idempotent-replayed" not in a.headers]
    assert len(fresh) == 1
    for a in answers:
        if a.status_code == 409:
            assert a.json()["code"] == "idempotency_key_in_flight"
        else:
            assert a.content == fresh[0].content
    print("statuses of 6 concurrent tries:", statuses)
    assert counters(client)["files"] == 1


def test_a_replay_of_a_metadata_merge_answers_what_the_first_try_applied(
    client: TestClient, read: Callable[[str], bytes]
) -> None:
    cat = read("cat.jpg")
    assert post(client, cat, "k-a", tag="pets").status_code == 201
    merged = post(client, cat, "k-b", tag="indoor", label="tabby")
    assert merged.status_code == 200, merged.text
    applied = merged.json()["images"][0]["applied"]
    assert applied["tags_added"] == ["indoor"] and applied["label"] == "set"
    work = counters(client)
    again = post(client, cat, "k-b", tag="indoor", label="tabby")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == merged.content  # what the first try did, not "nothing new"
    assert counters(client) == {**work, "idempotent_replays": work["idempotent_replays"] + 1}
