"""The gallery's confidence, disagreement and near-duplicate controls and its bulk label form,
without a browser (tests/browser/test_gallery_browser.py drives them in Chromium)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from imgest.duplicates import GroupCache, together
from tests.api.test_ui import card_html, cards, put


@pytest.fixture
def three(client: TestClient, data_dir: Path) -> dict[str, dict[str, Any]]:
    """cat (top-1 below 50 %), coffee (above), rocket."""
    return {name: put(client, data_dir / f"{name}.jpg") for name in ("cat", "coffee", "rocket")}


def score(image: dict[str, Any]) -> float:
    value: float = image["predictions"][-1]["top"][0]["score"]
    return value


def test_gallery_sorts_by_confidence_and_filters_by_percent(
    client: TestClient, three: dict[str, dict[str, Any]]
) -> None:
    ranked = sorted(three.values(), key=score, reverse=True)
    html = client.get("/gallery", params={"sort": "most_confident"}).text
    assert cards(html) == [i["id"] for i in ranked]
    assert '<option value="most_confident" selected>' in html
    html = client.get("/gallery", params={"sort": "least_confident"}).text
    assert cards(html) == [i["id"] for i in ranked[::-1]]
    below = client.get("/gallery", params={"max": "50"}).text
    assert cards(below) == [i["id"] for i in three.values() if score(i) <= 0.5][::-1]
    assert three["cat"]["id"] in cards(below) and three["coffee"]["id"] not in cards(below)
    assert 'id="max" name="max" min="0" max="100" step="any" value="50"' in below


def test_gallery_shows_confidence_as_a_meter_and_unsure_cards_paler(
    client: TestClient, three: dict[str, dict[str, Any]]
) -> None:
    html = client.get("/gallery").text
    for image in three.values():
        card = card_html(html, image["id"])
        assert 'class="confidence" min="0" max="1" low="0.5"' in card
        assert f'value="{score(image)}"' in card
    assert re.search(rf'<li class="card unsure"[^>]*data-id="{three["cat"]["id"]}"', html)
    assert re.search(rf'<li class="card"[^>]*data-id="{three["coffee"]["id"]}"', html)


def test_gallery_disagreement_filter_and_mark(
    client: TestClient, three: dict[str, dict[str, Any]]
) -> None:
    cat, coffee = three["cat"], three["coffee"]
    top = coffee["predictions"][-1]["top"][0]["label"]
    assert client.patch(f"/v1/images/{coffee['id']}", json={"label": top.upper()}).is_success
    assert client.patch(f"/v1/images/{cat['id']}", json={"label": "a dog"}).is_success
    html = client.get("/gallery", params={"disagrees": "1"}).text
    assert cards(html) == [cat["id"]]
    assert 'id="disagrees" name="disagrees" value="1" checked' in html
    everything = client.get("/gallery").text
    assert re.search(rf'<li class="card[^"]* disagrees"[^>]*data-id="{cat["id"]}"', everything)
    assert re.search(rf'<li class="card"[^>]*data-id="{coffee["id"]}"', everything)


def test_group_controls_are_hidden_without_groups_and_shown_with_them(
    client: TestClient, three: dict[str, dict[str, Any]]
) -> None:
    # Three different photos: groups are computed (each image is a group of its own), but
    # none has two images, so there is nothing to show.
    html = client.get("/gallery").text
    assert 'id="group"' not in html and "near-duplicates</a>" not in html
    alone = client.get("/gallery", params={"group": three["cat"]["id"]})
    assert alone.status_code == 200 and cards(alone.text) == [three["cat"]["id"]]

    cat, rocket = three["cat"]["id"], three["rocket"]["id"]
    group = min(cat, rocket)
    client.app.state.groups = GroupCache(lambda: {cat: group, rocket: group})  # type: ignore[attr-defined]
    html = client.get("/gallery").text
    assert 'id="group"' in html
    link = f'<a class="chip group" href="/gallery?group={group}"'
    assert link in card_html(html, cat) and link in card_html(html, rocket)
    assert "chip group" not in card_html(html, three["coffee"]["id"])
    only = client.get("/gallery", params={"group": group}).text
    assert sorted(cards(only)) == sorted([cat, rocket])
    assert 'id="group-notice"' in only and "2 images" in only


def test_a_group_s_images_are_laid_side_by_side_and_marked(
    client: TestClient, three: dict[str, dict[str, Any]]
) -> None:
    cat, coffee, rocket = (three[n]["id"] for n in ("cat", "coffee", "rocket"))
    assert cards(client.get("/gallery").text) == [rocket, coffee, cat]  # newest first
    group = min(cat, rocket)
    client.app.state.groups = GroupCache(lambda: {cat: group, rocket: group})  # type: ignore[attr-defined]
    html = client.get("/gallery").text
    assert cards(html) == [rocket, cat, coffee]  # the group at its first image's place
    for image in (cat, rocket):
        assert re.search(rf'data-id="{image}"[^>]* data-group="{group}" data-hue="[0-7]"', html)
    assert "data-group" not in card_html(html, coffee)
    ranked = cards(client.get("/gallery", params={"sort": "least_confident"}).text)
    at = ranked.index(cat) if ranked.index(cat) < ranked.index(rocket) else ranked.index(rocket)
    assert {ranked[at], ranked[at + 1]} == {cat, rocket}  # side by side in any order


def test_together_keeps_the_order_apart_from_moving_members_up() -> None:
    groups = {"b": "b", "d": "b", "e": "b", "c": "c", "f": "c"}
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    assert [ids[n] for n in together(ids, groups)] == ["a", "b", "d", "e", "c", "f", "g"]
    assert together(ids, None) == list(range(7)) and together([], groups) == []


@pytest.mark.parametrize(
    "params",
    [{"min": "150"}, {"max": "-1"}, {"min": "abc"}, {"min": "80", "max": "20"}, {"sort": "x"}],
)
def test_gallery_explains_bad_confidence_and_sort_values(
    client: TestClient, params: dict[str, str]
) -> None:
    r = client.get("/gallery", params=params)
    assert r.status_code == 422
    assert 'class="problem" role="alert"' in r.text


def test_gallery_offers_bulk_labelling_with_vocabulary_suggestions(
    client: TestClient, three: dict[str, dict[str, Any]]
) -> None:
    html = client.get("/gallery").text
    assert '<form id="bulk"' in html and 'data-url="/v1/images"' in html
    assert '<option value="tabby">tabby, tabby cat</option>' in html
    for image in three.values():
        assert f'class="pick" value="{image["id"]}"' in html
    assert "/ui/static/gallery.js" in html
    assert client.get("/ui/static/gallery.js").status_code == 200


def test_an_order_alone_is_no_filter_in_the_empty_gallery(client: TestClient) -> None:
    html = client.get("/gallery", params={"sort": "most_confident"}).text
    assert "No images yet" in html and "match these filters" not in html
