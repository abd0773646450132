"""The gallery in Chromium: sort and filter by confidence, the disagreement filter, near-duplicate
groups, selecting many images and setting their ground truth in one request, suggestions from
the vocabulary, and confidence shown as a meter with unsure cards paler."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PHONE, open_page
from tests.services.imgest_server import Server

pytestmark = pytest.mark.browser

# Loaded by the server's Python at start-up (PYTHONPATH): stands in for the similarity module
# (`imgest.similarity.groups`), reading the groups from a JSON file, so the test chooses them.
FAKE_GROUPS = """
import json, os, sys, types

def near_duplicate_groups(catalog, model, model_version, threshold):
    with open(os.environ["TEST_GROUPS_FILE"]) as fh:
        return json.load(fh)

class IncrementalGroups:
    def __init__(self, catalog, model_version, threshold, **options):
        self.model_version = model_version

    def update(self):
        return near_duplicate_groups(None, None, self.model_version, None)

module = types.ModuleType("imgest.similarity.groups")
module.near_duplicate_groups = near_duplicate_groups
module.IncrementalGroups = IncrementalGroups
sys.modules["imgest.similarity.groups"] = module
"""

PHOTOS = ("cat", "coffee", "rocket", "astronaut")


@pytest.fixture(scope="module")
def grouped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, Any]]]:
    """A server whose near-duplicate groups put cat and rocket together, and its images."""
    root = tmp_path_factory.mktemp("gallery-server")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(FAKE_GROUPS)
    groups_file = root / "groups.json"
    path = os.pathsep.join(p for p in (str(root / "site"), os.environ.get("PYTHONPATH")) if p)
    env = {"PYTHONPATH": path, "TEST_GROUPS_FILE": str(groups_file)}
    data = Path(__file__).parent.parent / "data"
    with Server(root, env=env) as server:
        images = {}
        for name in PHOTOS:
            files = {"file": (f"{name}.jpg", (data / f"{name}.jpg").read_bytes(), "image/jpeg")}
            r = httpx.post(server.base + "/v1/images", files=files, timeout=120)
            assert r.status_code == 201, r.text
            images[name] = r.json()["images"][0]
        group = min(images["cat"]["id"], images["rocket"]["id"])
        groups = {images["cat"]["id"]: group, images["rocket"]["id"]: group}
        groups_file.write_text(json.dumps(groups))
        yield server, images


def card(page: Page, name: str) -> Any:
    return page.locator(".grid > li").filter(has=page.locator(".card-name", has_text=name))


def score(image: dict[str, Any]) -> float:
    value: float = image["predictions"][-1]["top"][0]["score"]
    return value


def names_shown(page: Page) -> list[str]:
    names: list[str] = page.locator(".grid > li .card-name").all_text_contents()
    return names


def test_sort_and_filter_by_confidence_with_a_meter_and_pale_guesses(
    page: Page, grouped: tuple[Server, dict[str, Any]], artifacts: Path
) -> None:
    server, images = grouped
    page.goto(server.base + "/gallery")
    page.get_by_label("Order").select_option(label="Least confident first")
    page.get_by_role("button", name="Filter").click()
    ranked = sorted(images, key=lambda n: score(images[n]))
    expect(page.locator(".grid > li .card-name")).to_have_text([f"{n}.jpg" for n in ranked])
    for name in PHOTOS:
        meter = card(page, f"{name}.jpg").locator("meter.confidence")
        expect(meter).to_be_visible()
        assert float(meter.get_attribute("value") or "nan") == pytest.approx(score(images[name]))
        img = card(page, f"{name}.jpg").locator("img")
        opacity = float(img.evaluate("el => getComputedStyle(el).opacity"))
        # A guess (top-1 below 50 %) looks uncertain: a paler picture and a "?".
        unsure = score(images[name]) < 0.5
        assert (opacity < 0.7) if unsure else (opacity == 1.0), (name, opacity)
        expect(card(page, f"{name}.jpg").locator(".unsure-mark")).to_have_count(int(unsure))
    page.screenshot(path=artifacts / "gallery-confidence.png", full_page=True)

    page.get_by_label("Confidence from (%)").fill("50")
    page.get_by_role("button", name="Filter").click()
    sure = [f"{n}.jpg" for n in ranked if score(images[n]) >= 0.5]
    expect(page.locator(".grid > li .card-name")).to_have_text(sure)
    assert "min=50" in page.url and "sort=least_confident" in page.url


def test_disagreement_filter_shows_where_the_top1_misses_the_ground_truth(
    page: Page, grouped: tuple[Server, dict[str, Any]]
) -> None:
    server, images = grouped
    coffee_top = images["coffee"]["predictions"][-1]["top"][0]["label"]
    for name, label in (("coffee", coffee_top.split(",")[0].upper()), ("astronaut", "a dog")):
        r = httpx.patch(f"{server.base}/v1/images/{images[name]['id']}", json={"label": label})
        assert r.status_code == 200
    page.goto(server.base + "/gallery")
    expect(card(page, "astronaut.jpg").locator(".disagree-mark")).to_be_visible()
    expect(card(page, "coffee.jpg").locator(".disagree-mark")).to_be_hidden()
    page.get_by_label("Prediction disagrees with ground truth").check()
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".grid > li .card-name")).to_have_text(["astronaut.jpg"])
    expect(page.get_by_label("Prediction disagrees with ground truth")).to_be_checked()
    for name in ("coffee", "astronaut"):
        httpx.patch(f"{server.base}/v1/images/{images[name]['id']}", json={"label": None})


def test_near_duplicate_groups_are_chips_that_filter_the_gallery(
    page: Page, grouped: tuple[Server, dict[str, Any]]
) -> None:
    server, images = grouped
    page.goto(server.base + "/gallery")
    expect(page.get_by_label("Near-duplicate group")).to_be_visible()
    expect(card(page, "coffee.jpg").locator(".chip.group")).to_have_count(0)
    card(page, "cat.jpg").get_by_role("link", name="2 near-duplicates").click()
    expect(page.locator("#group-notice")).to_contain_text("2 images")
    assert sorted(names_shown(page)) == ["cat.jpg", "rocket.jpg"]
    group = min(images["cat"]["id"], images["rocket"]["id"])
    expect(page.get_by_label("Near-duplicate group")).to_have_value(group)


def test_a_group_s_images_sit_side_by_side_with_a_band_in_its_colour(
    page: Page, grouped: tuple[Server, dict[str, Any]], artifacts: Path
) -> None:
    server, images = grouped
    page.goto(server.base + "/gallery")
    # uploaded cat, coffee, rocket, astronaut: newest first, the cat moved up to its rocket
    assert names_shown(page) == ["astronaut.jpg", "rocket.jpg", "cat.jpg", "coffee.jpg"]
    group = min(images["cat"]["id"], images["rocket"]["id"])
    styles = {
        name: card(page, name).evaluate(
            "el => [getComputedStyle(el).boxShadow, getComputedStyle(el).borderTopColor]"
        )
        for name in ("cat.jpg", "rocket.jpg", "coffee.jpg")
    }
    assert "inset" in styles["cat.jpg"][0] and styles["cat.jpg"] == styles["rocket.jpg"]
    assert styles["coffee.jpg"][0] == "none"
    assert styles["coffee.jpg"][1] != styles["cat.jpg"][1]
    expect(card(page, "cat.jpg")).to_have_attribute("data-group", group)
    page.screenshot(path=artifacts / "gallery-groups-together.png", full_page=True)


def test_select_many_and_set_their_ground_truth_in_one_request(
    page: Page, grouped: tuple[Server, dict[str, Any]], artifacts: Path
) -> None:
    server, images = grouped
    page.goto(server.base + "/gallery")
    count = page.locator("#bulk-count")
    expect(count).to_have_text("0 selected")
    expect(page.get_by_role("button", name="Set ground truth")).to_be_disabled()
    page.get_by_role("button", name="Select all on this page").click()
    expect(count).to_have_text("4 selected")
    page.get_by_role("button", name="Clear selection").click()
    expect(count).to_have_text("0 selected")

    page.get_by_label("Select cat.jpg").check()
    page.get_by_label("Select rocket.jpg").check()
    expect(count).to_have_text("2 selected")
    expect(card(page, "cat.jpg")).to_have_class("card unsure picked")
    # Suggestions come from the model's vocabulary: short names that map to one class each.
    field = page.get_by_label("Ground truth for the selected")
    expect(page.locator('#suggestions option[value="tabby"]')).to_have_count(1)
    assert field.get_attribute("list") == "suggestions"
    field.fill("tabby")
    with page.expect_request(lambda r: r.method == "PATCH") as sent:
        page.get_by_role("button", name="Set ground truth").click()
    body = sent.value.post_data_json
    assert body is not None
    assert sorted(body["ids"]) == sorted([images["cat"]["id"], images["rocket"]["id"]])
    assert body["label"] == "tabby"
    expect(page.locator("#bulk-status")).to_have_text("Set “tabby” on 2 images.")
    expect(card(page, "cat.jpg").locator(".truth-value")).to_have_text("tabby")
    expect(card(page, "rocket.jpg").locator(".truth-value")).to_have_text("tabby")
    expect(card(page, "coffee.jpg").locator(".truth-value")).to_have_text("not set")
    expect(count).to_have_text("0 selected")
    page.screenshot(path=artifacts / "gallery-bulk-label.png", full_page=True)
    for name, want in (("cat", "tabby"), ("rocket", "tabby"), ("coffee", None)):
        stored = httpx.get(f"{server.base}/v1/images/{images[name]['id']}").json()
        assert stored["label"] == want, name
    # The rocket's top-1 is no tabby: its card now says so, without a reload.
    expect(card(page, "rocket.jpg").locator(".disagree-mark")).to_be_visible()

    # An empty field clears the ground truth of the selected.
    page.get_by_label("Select rocket.jpg").check()
    field.fill("")
    page.get_by_role("button", name="Set ground truth").click()
    expect(page.locator("#bulk-status")).to_have_text("Cleared the ground truth of 1 image.")
    expect(card(page, "rocket.jpg").locator(".truth-value")).to_have_text("not set")
    rocket = httpx.get(f"{server.base}/v1/images/{images['rocket']['id']}").json()
    assert rocket["label"] is None

    # A label the server refuses is explained in words, and nothing changes.
    page.get_by_label("Select coffee.jpg").check()
    field.fill("tab\there")
    page.get_by_role("button", name="Set ground truth").click()
    expect(page.locator("#bulk-status")).to_have_text(
        "Invalid label: A label must not contain control characters."
    )
    coffee = httpx.get(f"{server.base}/v1/images/{images['coffee']['id']}").json()
    assert coffee["label"] is None


def test_the_gallery_fits_a_phone(
    browser: Any, grouped: tuple[Server, dict[str, Any]], artifacts: Path
) -> None:
    server, _ = grouped
    for phone in open_page(browser, PHONE):
        phone.goto(server.base + "/gallery")
        expect(phone.locator(".grid > li")).to_have_count(4)
        phone.get_by_label("Select cat.jpg").check()
        expect(phone.locator("#bulk-count")).to_have_text("1 selected")
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        phone.screenshot(path=artifacts / "gallery-controls-phone.png", full_page=True)


def test_without_groups_the_group_control_is_hidden(
    page: Page, server: Server, data_dir: Path
) -> None:
    files = {"file": ("cat.jpg", (data_dir / "cat.jpg").read_bytes(), "image/jpeg")}
    assert httpx.post(server.base + "/v1/images", files=files, timeout=120).is_success
    page.goto(server.base + "/gallery")
    expect(page.locator(".grid > li")).to_have_count(1)
    expect(page.get_by_label("Near-duplicate group")).to_have_count(0)
    expect(page.locator(".chip.group")).to_have_count(0)
