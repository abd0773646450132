"""Near-duplicates at upload (flag / reject / off) and the similar-image routes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import delete

from imgest.catalog.models import EmbeddingRow
from tests.api.test_upload import blob_paths, problem, upload

THRESHOLD = 0.85  # the default near_duplicate_threshold


@pytest.fixture(scope="module")
def variants(data_dir: Path) -> dict[str, bytes]:
    """cat.jpg, a re-encoded and shrunk copy of it (a near-duplicate), and other photos."""
    import io

    cat = Image.open(data_dir / "cat.jpg").convert("RGB")
    out = io.BytesIO()
    cat.resize((cat.width * 3 // 4, cat.height * 3 // 4)).save(out, "JPEG", quality=60)
    png = io.BytesIO()
    cat.save(png, "PNG")
    return {
        "cat-png": png.getvalue(),
        "cat": (data_dir / "cat.jpg").read_bytes(),
        "cat-copy": out.getvalue(),
        "coffee": (data_dir / "coffee.jpg").read_bytes(),
        "rocket": (data_dir / "rocket.jpg").read_bytes(),
    }


def stored_id(client: TestClient, data: bytes, name: str = "f.jpg") -> str:
    r = upload(client, [(name, data)])
    assert r.status_code == 201, r.text
    item = r.json()["images"][0]
    return str(item["id"])


def test_flag_lists_stored_near_duplicates_and_stores_the_file(
    client: TestClient, variants: dict[str, bytes]
) -> None:
    first = upload(client, [("cat.jpg", variants["cat"])]).json()["images"][0]
    assert first["near_duplicates"] == []  # nothing stored before it
    cat_id = first["id"]
    r = upload(client, [("copy.jpg", variants["cat-copy"]), ("coffee.jpg", variants["coffee"])])
    assert r.status_code == 201, r.text
    copy, coffee = r.json()["images"]
    assert copy["status"] == "created"
    assert [d["id"] for d in copy["near_duplicates"]] == [cat_id]
    assert THRESHOLD <= copy["near_duplicates"][0]["score"] < 1.0
    assert coffee["near_duplicates"] == []
    assert len(client.get("/v1/images").json()["items"]) == 3


def test_reject_answers_409_and_stores_nothing(
    make_client: Callable[..., TestClient], variants: dict[str, bytes]
) -> None:
    client = make_client(near_duplicates="reject")
    cat_id = stored_id(client, variants["cat"])
    blobs = blob_paths(client)
    body = problem(upload(client, [("copy.jpg", variants["cat-copy"])]), 409, "near_duplicate")
    assert cat_id in body["detail"]
    (item,) = body["images"]
    assert item["status"] == "rejected" and item["error"]["code"] == "near_duplicate"
    assert [d["id"] for d in item["near_duplicates"]] == [cat_id]
    assert [i["id"] for i in client.get("/v1/images").json()["items"]] == [cat_id]
    assert blob_paths(client) == blobs  # no blob either
    # A distinct photo in the same request is stored: 207, one rejected.
    r = upload(client, [("copy.jpg", variants["cat-copy"]), ("coffee.jpg", variants["coffee"])])
    assert r.status_code == 207, r.text
    assert [i["status"] for i in r.json()["images"]] == ["rejected", "created"]


def test_off_does_not_search(
    make_client: Callable[..., TestClient], variants: dict[str, bytes]
) -> None:
    client = make_client(near_duplicates="off")
    stored_id(client, variants["cat"])
    r = upload(client, [("copy.jpg", variants["cat-copy"])])
    assert r.status_code == 201 and r.json()["images"][0]["near_duplicates"] == []


def test_similar_to_a_stored_image(client: TestClient, variants: dict[str, bytes]) -> None:
    ids = {
        name: stored_id(client, data, f"{name}.jpg")
        for name, data in variants.items()
        if name != "cat-png"
    }
    r = client.get(f"/v1/images/{ids['cat-copy']}/similar", params={"k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "efficientnet-lite0" and len(body["model_version"]) == 64
    items = body["items"]
    assert len(items) == 2 and items[0]["id"] == ids["cat"]  # itself left out
    assert items[0]["score"] >= THRESHOLD > items[1]["score"]
    everything = client.get(f"/v1/images/{ids['cat']}/similar", params={"k": 100}).json()
    assert sorted(i["id"] for i in everything["items"]) == sorted(set(ids.values()) - {ids["cat"]})
    scores = [i["score"] for i in everything["items"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("k", ["0", "101", "x"])
def test_similar_k_is_bounded(client: TestClient, variants: dict[str, bytes], k: str) -> None:
    cat_id = stored_id(client, variants["cat"])
    problem(client.get(f"/v1/images/{cat_id}/similar", params={"k": k}), 422, "invalid_parameter")


def test_similar_unknown_image_and_missing_embedding(
    client: TestClient, variants: dict[str, bytes]
) -> None:
    problem(client.get(f"/v1/images/{'0' * 64}/similar"), 404, "image_not_found")
    problem(client.get("/v1/images/nothex/similar"), 404, "image_not_found")
    cat_id = stored_id(client, variants["cat"])
    catalog = client.app.state.catalog  # type: ignore[attr-defined]
    with catalog.writing() as session:  # as an image stored before embeddings were recorded
        session.execute(delete(EmbeddingRow))
    body = problem(client.get(f"/v1/images/{cat_id}/similar"), 409, "no_embedding")
    assert "rescore" in body["detail"]


def query(client: TestClient, files: list[tuple[str, bytes]], **params: Any) -> Any:
    return client.post(
        "/v1/similar",
        files=[("file", (name, data, "application/octet-stream")) for name, data in files],
        params=params,
    )


def test_search_by_query_image_stores_nothing(
    client: TestClient, variants: dict[str, bytes]
) -> None:
    cat_id = stored_id(client, variants["cat"])
    coffee_id = stored_id(client, variants["coffee"])
    blobs = blob_paths(client)
    r = query(client, [("q.jpg", variants["cat-copy"])], k=5)
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == [cat_id, coffee_id]
    assert r.json()["items"][0]["score"] >= THRESHOLD
    assert len(client.get("/v1/images").json()["items"]) == 2
    assert blob_paths(client) == blobs


def test_search_by_query_image_refuses_bad_input(client: TestClient) -> None:
    problem(query(client, [("a.txt", b"not an image at all")]), 415, "unsupported_media_type")
    problem(query(client, [("a.jpg", b"")]), 422, "empty_file")
    two = [("a.png", b"\x89PNG"), ("b.png", b"\x89PNG")]
    problem(query(client, two), 422, "too_many_files")
    r = client.post("/v1/similar", data={"tag": "x"}, files={"f": ("", b"")})
    assert r.status_code in (400, 422) and r.headers["content-type"] == "application/problem+json"
    problem(client.post("/v1/similar", json={"a": 1}), 415, "not_multipart")


def test_delete_and_replicas(
    make_client: Callable[..., TestClient], variants: dict[str, bytes], tmp_path: Path
) -> None:
    """A replica sees what another one added (it catches up before a search) and never
    answers an image another one deleted."""
    shared = {"catalog_url": f"sqlite:///{tmp_path / 'shared.db'}"}
    a, b = make_client(**shared), make_client(**shared)
    cat_id = stored_id(a, variants["cat"])
    copy_id = stored_id(a, variants["cat-copy"])
    assert [i["id"] for i in b.get(f"/v1/images/{copy_id}/similar").json()["items"]] == [cat_id]
    r = upload(b, [("rocket.jpg", variants["rocket"])])
    rocket_id = r.json()["images"][0]["id"]
    found = a.get(f"/v1/images/{copy_id}/similar").json()["items"]
    assert {i["id"] for i in found} == {cat_id, rocket_id}
    assert a.delete(f"/v1/images/{cat_id}").status_code == 204
    for replica in (a, b):
        found = replica.get(f"/v1/images/{copy_id}/similar").json()["items"]
        assert [i["id"] for i in found] == [rocket_id]
    again = upload(b, [("copy2.png", variants["cat-png"])]).json()["images"][0]
    assert again["status"] == "created"
    assert [d["id"] for d in again["near_duplicates"]] == [copy_id]  # not the deleted cat
