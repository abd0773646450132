"""The image page's ground-truth form, against an app that has a PATCH route.

This build has no `PATCH /v1/images/{id}` yet, so the test adds a small one to a real app served
by uvicorn on loopback (in a thread): it checks what the page's script sends and shows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import Body, Request
from playwright.sync_api import Page, expect

from imgest.app import create_app
from imgest.config import load_settings
from imgest.errors import InvalidParameter
from imgest.scoring.model import Model
from tests.services.imgest_server import free_port, wait_for_tcp

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an imgest app with a PATCH route that accepts the model's labels."""
    root = tmp_path_factory.mktemp("label-app")
    model = Model.bundled(threads=1)
    app = create_app(
        load_settings(storage_url="memory://", catalog_url=f"sqlite:///{root / 'c.db'}"),
        model=model,
    )
    known = set(model.labels)

    async def set_label(
        request: Request, image: str, label: str | None = Body(embed=True)
    ) -> dict[str, Any]:
        if label is not None and label not in known:
            raise InvalidParameter(f"{label!r} is not a label of the model.")
        return {"id": image, "label": label}

    app.add_api_route("/v1/images/{image}", set_label, methods=["PATCH"])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    )
    thread = threading.Thread(target=server.run, name="label-app")
    thread.start()
    try:
        wait_for_tcp(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_ground_truth_form_sends_patch_and_shows_the_answer(
    page: Page, base: str, data_dir: Path
) -> None:
    files = {"file": ("cat.jpg", (data_dir / "cat.jpg").read_bytes(), "image/jpeg")}
    image = httpx.post(base + "/v1/images", files=files).json()["images"][0]
    page.goto(f"{base}/images/{image['id']}")
    expect(page.locator("#truth-value")).to_have_text("not set")

    field = page.get_by_label("Set label")
    field.fill("tabby, tabby cat")
    with page.expect_request(lambda r: r.method == "PATCH") as sent:
        page.get_by_role("button", name="Save").click()
    assert sent.value.post_data_json == {"label": "tabby, tabby cat"}
    expect(page.locator("#truth-status")).to_have_text("Saved.")
    expect(page.locator("#truth-value")).to_have_text("tabby, tabby cat")

    field.fill("<b>not a label</b>")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#truth-status")).to_have_text(
        "Invalid parameter: '<b>not a label</b>' is not a label of the model."
    )
    expect(page.locator("#truth-value")).to_have_text("tabby, tabby cat")
    expect(page.locator("#truth-status b")).to_have_count(0)  # shown as text, not markup

    field.fill("")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#truth-value")).to_have_text("not set")
