"""The image page's ground-truth form against the real `PATCH /v1/images/{id}`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.services.imgest_server import Server

pytestmark = pytest.mark.browser


def test_ground_truth_form_sends_patch_and_shows_the_answer(
    page: Page, server: Server, data_dir: Path
) -> None:
    files = {"file": ("coffee.jpg", (data_dir / "coffee.jpg").read_bytes(), "image/jpeg")}
    image = httpx.post(server.base + "/v1/images", files=files, timeout=60).json()["images"][0]
    page.goto(f"{server.base}/images/{image['id']}")
    expect(page.locator("#truth-value")).to_have_text("not set")

    field = page.get_by_label("Set ground truth")
    field.fill("espresso")
    with page.expect_request(lambda r: r.method == "PATCH") as sent:
        page.get_by_role("button", name="Save").click()
    assert sent.value.post_data_json == {"label": "espresso"}
    expect(page.locator("#truth-status")).to_have_text("Saved.")
    expect(page.locator("#truth-value")).to_have_text("espresso")
    stored = httpx.get(f"{server.base}/v1/images/{image['id']}", timeout=30).json()
    assert stored["label"] == "espresso"

    # Ground truth may be any printable text (a class the model does not know yet included);
    # markup in it is shown as text.
    field.fill("<b>latte art</b>")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#truth-value")).to_have_text("<b>latte art</b>")
    expect(page.locator("#truth-value b")).to_have_count(0)

    field.fill("tab\there")  # a control character: the server refuses it, in words
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#truth-status")).to_have_text(
        "Invalid label: A label must not contain control characters."
    )
    expect(page.locator("#truth-value")).to_have_text("<b>latte art</b>")

    field.fill("")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#truth-value")).to_have_text("not set")
    assert httpx.get(f"{server.base}/v1/images/{image['id']}", timeout=30).json()["label"] is None
