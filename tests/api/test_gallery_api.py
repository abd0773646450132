"""The list endpoint's confidence, disagreement and near-duplicate group filters and sorts, and
the bulk label endpoint (PATCH /v1/images)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from imgest.catalog.records import Label, PredictionRecord
from imgest.duplicates import GroupCache
from imgest.labels import MAX_BULK_LABELS

# Scores and top-1 classes of the latest prediction given to each of five images.
SCORES = [0.95, 0.30, 0.70, 0.10, 0.55]
CLASSES = ["tabby, tabby cat", "espresso", "tabby, tabby cat", "space shuttle", "100%_sure"]


def jpeg(n: int) -> bytes:
    """A small distinct JPEG per n."""
    import io

    out = io.BytesIO()
    Image.new("RGB", (48, 40), (n * 40 % 256, 90, 200 - n * 30)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def scored(client: TestClient) -> list[str]:
    """Five images whose latest prediction has the SCORES and CLASSES above."""
    ids = []
    catalog = client.app.state.catalog  # type: ignore[attr-defined]
    for n, (score, cls) in enumerate(zip(SCORES, CLASSES, strict=True)):
        r = client.post("/v1/images", files=[("file", (f"{n}.jpg", jpeg(n), "image/jpeg"))])
        assert r.status_code == 201, r.text
        image_id = r.json()["images"][0]["id"]
        top = (Label(cls, n, score), Label("other", 999, (1 - score) / 2))
        when = datetime.now(UTC)
        assert catalog.add_prediction(
            image_id, PredictionRecord("later", "f" * 64, "default", "v9", top, when)
        )
        ids.append(image_id)
    return ids


def listed(client: TestClient, **params: Any) -> list[str]:
    r = client.get("/v1/images", params=params)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()["items"]]


def test_confidence_filters_use_the_latest_prediction(
    client: TestClient, scored: list[str]
) -> None:
    low = listed(client, max_confidence=0.5)
    assert sorted(low) == sorted([scored[1], scored[3]])
    mid = listed(client, min_confidence=0.55, max_confidence=0.7)
    assert sorted(mid) == sorted([scored[2], scored[4]])  # both bounds inclusive
    assert listed(client, min_confidence=0.96) == []


def test_sort_by_confidence_pages_through_every_image_once(
    client: TestClient, scored: list[str]
) -> None:
    by_score = [i for _, i in sorted(zip(SCORES, scored, strict=True), reverse=True)]
    for sort, want in (("most_confident", by_score), ("least_confident", by_score[::-1])):
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"sort": sort, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/images", params=params).json()
            seen += [i["id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == want, sort


def test_a_cursor_of_another_sort_is_refused(client: TestClient, scored: list[str]) -> None:
    newest = client.get("/v1/images", params={"limit": 1}).json()["next_cursor"]
    r = client.get("/v1/images", params={"sort": "most_confident", "cursor": newest})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_parameter"
    ranked = client.get("/v1/images", params={"limit": 1, "sort": "most_confident"}).json()
    r = client.get(
        "/v1/images", params={"sort": "least_confident", "cursor": ranked["next_cursor"]}
    )
    assert r.status_code == 422


def test_disagrees_compares_ground_truth_with_the_top1_and_its_synonyms(
    client: TestClient, scored: list[str]
) -> None:
    for image_id, label in zip(
        scored, ["Tabby Cat", "espresso", "tiger", "shuttle", "100%_sure"], strict=True
    ):
        assert client.patch(f"/v1/images/{image_id}", json={"label": label}).status_code == 200
    # "Tabby Cat" names "tabby, tabby cat" (a synonym, any case); "espresso" and "100%_sure"
    # equal their class (LIKE's wildcards in a label are plain characters); "tiger" and
    # "shuttle" name no synonym of their image's top-1.
    assert sorted(listed(client, disagrees=True)) == sorted([scored[2], scored[3]])
    assert listed(client, disagrees=True, min_confidence=0.5) == [scored[2]]


def test_images_without_ground_truth_or_prediction_never_disagree(
    client: TestClient, scored: list[str]
) -> None:
    assert listed(client, disagrees=True) == []


@pytest.mark.parametrize(
    "params",
    [
        {"min_confidence": "1.5"},
        {"max_confidence": "-0.1"},
        {"min_confidence": "nan"},
        {"min_confidence": "0.8", "max_confidence": "0.2"},
        {"sort": "oldest"},
        {"disagrees": "perhaps"},
        {"sort": "most_confident", "cursor": "@@@"},
        {"group": "f" * 64},  # no groups on this server
    ],
)
def test_bad_filter_values_are_422_invalid_parameter(
    client: TestClient, params: dict[str, str]
) -> None:
    r = client.get("/v1/images", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "invalid_parameter"


def with_groups(client: TestClient, groups: Mapping[str, str] | None) -> None:
    client.app.state.groups = GroupCache(lambda: groups)  # type: ignore[attr-defined]


def test_group_filter_lists_the_members_of_one_near_duplicate_group(
    client: TestClient, scored: list[str]
) -> None:
    group = min(scored[0], scored[2])
    with_groups(client, {scored[0]: group, scored[2]: group, scored[1]: scored[1]})
    assert sorted(listed(client, group=group)) == sorted([scored[0], scored[2]])
    assert listed(client, group=scored[3].upper()) == [scored[3]]  # a group of its own
    r = client.get("/v1/images", params={"group": "not-an-id"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_parameter")


def test_group_cache_recomputes_only_after_its_ttl() -> None:
    import anyio

    calls: list[int] = []
    now = [0.0]

    def compute() -> dict[str, str]:
        calls.append(1)
        return {"a": "a"}

    cache = GroupCache(compute, ttl=60, clock=lambda: now[0])

    async def main() -> None:
        await cache.current()
        now[0] = 59.0
        await cache.current()
        now[0] = 61.0
        await cache.current()

    anyio.run(main)
    assert len(calls) == 2


# -- bulk labels ------------------------------------------------------------------------------


def test_bulk_label_sets_and_clears_many_labels_in_one_request(
    client: TestClient, scored: list[str]
) -> None:
    missing = "0" * 64
    body = {"ids": [scored[0], scored[1], missing, scored[0].upper()], "label": "  my cat "}
    r = client.patch("/v1/images", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"label": "my cat", "updated": scored[:2], "not_found": [missing]}
    labels = {i: client.get(f"/v1/images/{i}").json()["label"] for i in scored}
    assert labels == {**dict.fromkeys(scored), scored[0]: "my cat", scored[1]: "my cat"}
    cleared = client.patch("/v1/images", json={"ids": [scored[1]], "label": None})
    assert cleared.json()["updated"] == [scored[1]]
    assert client.get(f"/v1/images/{scored[1]}").json()["label"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"ids": [], "label": "x"},
        {"ids": ["a" * 64] * (MAX_BULK_LABELS + 1), "label": "x"},
        {"ids": ["nope"], "label": "x"},
        {"ids": ["a" * 64], "label": ""},
        {"ids": ["a" * 64], "label": "bad\x00label"},
        {"ids": ["a" * 64]},  # label must be given (null clears)
        {"ids": ["a" * 64], "label": "x", "tags": []},
        {"ids": "a" * 64, "label": "x"},
    ],
)
def test_bulk_label_refuses_bad_bodies_with_422_and_changes_nothing(
    client: TestClient, scored: list[str], body: dict[str, Any]
) -> None:
    ids = body.get("ids")
    if isinstance(ids, list) and ids:  # a valid id too: the request changes none of them
        body = {**body, "ids": [scored[0], *ids]}
    r = client.patch("/v1/images", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"]
    assert client.get(f"/v1/images/{scored[0]}").json()["label"] is None


def test_the_largest_bulk_request_fits_the_default_body_cap(
    client: TestClient, scored: list[str]
) -> None:
    ids = [*scored, *(f"{n:064x}" for n in range(MAX_BULK_LABELS - len(scored)))]
    r = client.patch("/v1/images", json={"ids": ids, "label": "x" * 200})
    assert r.status_code == 200, r.text
    assert (len(r.json()["updated"]), len(r.json()["not_found"])) == (5, MAX_BULK_LABELS - 5)


def test_bulk_label_needs_a_key_with_the_upload_or_admin_scope(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(auth="keys")
    keys = client.app.state.keys  # type: ignore[attr-defined]
    reader = keys.create(["read"]).token
    writer = keys.create(["upload"]).token
    body = {"ids": ["a" * 64], "label": "x"}
    assert client.patch("/v1/images", json=body).status_code == 401
    r = client.patch("/v1/images", json=body, headers={"Authorization": f"Bearer {reader}"})
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    r = client.patch("/v1/images", json=body, headers={"Authorization": f"Bearer {writer}"})
    assert r.status_code == 200, r.text
    assert r.json()["not_found"] == ["a" * 64]
