"""The web UI in a real browser: upload through the form, gallery, filters, image page, keyboard."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import FilePayload, Locator, Page, expect

from tests.services.imgest_server import Server

pytestmark = pytest.mark.browser

# Drops files on the drop zone the way a browser does: a DataTransfer holding File objects.
DROP_JS = """([selector, files]) => {
  const transfer = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], f.name, { type: f.type }));
  }
  const zone = document.querySelector(selector);
  for (const type of ["dragenter", "dragover", "drop"]) {
    const init = { bubbles: true, cancelable: true, dataTransfer: transfer };
    zone.dispatchEvent(new DragEvent(type, init));
  }
}"""


# Records every text each row's state line shows, by file name.
RECORD_STATES_JS = """() => {
  window.seenStates = {};
  new MutationObserver(() => {
    for (const row of document.querySelectorAll("#results > li")) {
      const name = row.querySelector(".result-name").textContent;
      const seen = (window.seenStates[name] ||= []);
      const text = row.querySelector(".state").textContent;
      if (seen[seen.length - 1] !== text) seen.push(text);
    }
  }).observe(document.getElementById("results"), {
    subtree: true, childList: true, characterData: true,
  });
}"""


def result_row(page: Page, filename: str) -> Locator:
    """The upload page's row for one file."""
    return page.locator("#results > li").filter(has=page.locator(".result-name", has_text=filename))


def natural_width(img: Locator) -> int:
    """The decoded width of an <img> (0 if it failed to load)."""
    img.scroll_into_view_if_needed()
    expect(img).to_have_js_property("complete", True)
    width: int = img.evaluate("el => el.naturalWidth")
    return width


def drop_files(page: Page, paths: list[Path]) -> None:
    files = [
        {"name": p.name, "type": "image/jpeg", "data": base64.b64encode(p.read_bytes()).decode()}
        for p in paths
    ]
    page.evaluate(DROP_JS, ["#drop", files])


def no_horizontal_scroll(page: Page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow} px wider than the {page.viewport_size} viewport"


def test_upload_gallery_and_image_page(
    page: Page, phone: Page, server: Server, data_dir: Path, artifacts: Path
) -> None:
    page.goto(server.base + "/")
    expect(page).to_have_title("Upload · imgest")
    page.get_by_label("Description").fill("kitchen counter")
    page.get_by_label("Tags").fill("flow, pets")
    page.get_by_label("choose files").set_input_files(
        [data_dir / "cat.jpg", data_dir / "coffee.jpg"]
    )
    drop_files(page, [data_dir / "rocket.jpg"])
    expect(page.locator("#results > li")).to_have_count(3)
    expect(result_row(page, "rocket.jpg").locator(".state")).to_have_text("Waiting")
    page.evaluate(RECORD_STATES_JS)
    page.get_by_role("button", name="Upload").click()

    for name in ("cat.jpg", "coffee.jpg", "rocket.jpg"):
        row = result_row(page, name)
        expect(row.locator(".state")).to_have_text("Stored")
        expect(row.locator("progress")).to_have_js_property("value", 100)
        expect(row.locator(".top li")).to_have_count(5)
        assert natural_width(row.locator("img")) == 224
    expect(page.locator("#summary")).to_have_text("3 stored")
    # Each row went through upload progress and processing before its result.
    states = page.evaluate("window.seenStates")
    for name in ("cat.jpg", "coffee.jpg", "rocket.jpg"):
        seen = states[name]
        assert "Uploading 100 %" in seen and seen[-2:] == ["Processing", "Stored"], seen

    # What the page shows is what the API stored for that image.
    cat_row = result_row(page, "cat.jpg")
    href = cat_row.get_by_role("link", name="Open image page").get_attribute("href")
    assert href is not None
    stored = httpx.get(server.base + "/v1" + href).json()
    top = stored["predictions"][0]["top"]
    expect(cat_row.locator(".top-label")).to_have_text([t["label"] for t in top])
    # A top-1 under the confidence threshold carries a "?" beside its label (the label is
    # the class name alone); a confident one none.
    expect(cat_row.locator(".unsure-mark")).to_have_count(1 if top[0]["score"] < 0.5 else 0)
    expect(cat_row.locator(".top-score")).to_have_text([f"{100 * t['score']:.1f} %" for t in top])
    assert stored["fields"] == {"description": "kitchen counter"}
    assert stored["tags"] == ["flow", "pets"]
    page.screenshot(path=artifacts / "upload-result-desktop.png", full_page=True)

    # Gallery: everything from this upload (tag filter), then one label.
    page.get_by_role("link", name="Gallery").click()
    page.get_by_label("Tag").fill("flow")
    page.get_by_role("button", name="Filter").click()
    cards = page.locator(".grid > li")
    expect(cards).to_have_count(3)
    for i in range(3):
        assert natural_width(cards.nth(i).locator("img")) == 224
    page.screenshot(path=artifacts / "gallery-desktop.png", full_page=True)

    coffee_label = httpx.get(server.base + "/v1/images", params={"tag": "flow"}).json()
    coffee = next(i for i in coffee_label["items"] if i["filename"] == "coffee.jpg")
    label = coffee["predictions"][0]["top"][0]["label"]
    page.get_by_label("Tag").fill("")
    page.get_by_label("Top-1 class").fill(label)
    page.get_by_role("button", name="Filter").click()
    expect(cards).to_have_count(1)
    expect(cards.locator(".card-name")).to_have_text("coffee.jpg")

    # Date filter (UTC days): today has them, a range that ends yesterday has none.
    today = datetime.now(UTC).date()
    page.goto(f"{server.base}/gallery?tag=flow&from={today}&to={today}")
    expect(cards).to_have_count(3)
    page.get_by_label("Uploaded to").fill(str(today - timedelta(days=1)))
    page.get_by_label("Uploaded from").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".empty")).to_contain_text("No images match these filters")

    # Image page from the gallery.
    page.goto(f"{server.base}/gallery?label={label}")
    cards.first.get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("coffee.jpg")
    assert natural_width(page.get_by_role("img", name="Original of coffee.jpg")) == 600
    predictions = page.locator(".prediction")
    expect(predictions).to_have_count(len(coffee["predictions"]))
    expect(predictions.first.get_by_role("heading")).to_contain_text("efficientnet-lite0")
    expect(predictions.first.locator(".top-label").first).to_have_text(label)
    details = page.locator(".kv")
    expect(details).to_contain_text("kitchen counter")
    expect(details).to_contain_text("600 \u00d7 400 px")
    expect(details.get_by_role("link", name="#pets")).to_be_visible()
    assert natural_width(page.get_by_role("img", name="default rendition")) == 224
    page.screenshot(path=artifacts / "image-desktop.png", full_page=True)

    # Phone width: same pages, nothing wider than the screen.
    phone.goto(server.base + "/")
    phone.get_by_label("choose files").set_input_files([data_dir / "cat.jpg"])
    phone.get_by_role("button", name="Upload").click()
    expect(result_row(phone, "cat.jpg").locator(".state")).to_have_text("Already stored")
    expect(result_row(phone, "cat.jpg").locator(".top li")).to_have_count(5)
    phone.screenshot(path=artifacts / "upload-result-phone.png", full_page=True)
    no_horizontal_scroll(phone)
    phone.goto(server.base + "/gallery?tag=flow")
    expect(phone.locator(".grid > li")).to_have_count(3)
    phone.screenshot(path=artifacts / "gallery-phone.png", full_page=True)
    no_horizontal_scroll(phone)
    phone.get_by_role("link", name="coffee.jpg").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("coffee.jpg")
    phone.screenshot(path=artifacts / "image-phone.png", full_page=True)
    no_horizontal_scroll(phone)


def test_rejected_file_is_reported_in_words(
    page: Page, server: Server, data_dir: Path, artifacts: Path
) -> None:
    page.goto(server.base + "/")
    text = (data_dir / "not-image.txt").read_bytes()
    photo = (data_dir / "astronaut.jpg").read_bytes()
    files: list[FilePayload] = [
        {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": text},
        {"name": "astronaut.jpg", "mimeType": "image/jpeg", "buffer": photo},
    ]
    page.get_by_label("choose files").set_input_files(files)
    page.get_by_role("button", name="Upload").click()
    row = result_row(page, "photo.jpg")
    expect(row.locator(".state")).to_have_text("Rejected")
    problem = row.get_by_role("alert")
    expect(problem).to_contain_text("Unsupported image format:")
    expect(problem).to_contain_text("JPEG, PNG")  # the detail sentence names what is accepted
    expect(row.locator(".top")).to_have_count(0)
    expect(result_row(page, "astronaut.jpg").locator(".state")).to_have_text("Stored")
    expect(page.locator("#summary")).to_have_text("1 stored · 1 rejected")
    page.screenshot(path=artifacts / "upload-rejected-desktop.png", full_page=True)
    stored = httpx.get(server.base + "/v1/images", params={"limit": 500}).json()["items"]
    assert "photo.jpg" not in [i["filename"] for i in stored]


def test_keyboard_only_upload(page: Page, server: Server, data_dir: Path, artifacts: Path) -> None:
    # Playwright turns file-chooser interception on when a listener is added, without waiting
    # for the browser to confirm; added only inside expect_file_chooser, it can lose the race
    # with the key press (a chooser that opens unintercepted: a timeout). Listen from the start.
    page.on("filechooser", lambda chooser: None)
    page.goto(server.base + "/")
    file_input = page.get_by_label("choose files")
    expect(file_input).to_have_attribute("type", "file")
    for _ in range(10):
        page.keyboard.press("Tab")
        if file_input.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the file input")
    # The drop zone shows that its (visually hidden) input has focus.
    outline = page.locator(".drop-label").evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid"
    page.screenshot(path=artifacts / "upload-keyboard-focus-desktop.png")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(data_dir / "cat-prophoto.jpg")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Description")).to_be_focused()
    page.keyboard.type("typed with keys")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Tags")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Upload")).to_be_focused()
    page.keyboard.press("Enter")
    row = result_row(page, "cat-prophoto.jpg")
    expect(row.locator(".state")).to_have_text("Stored")
    # The result's link is reachable and opens the image page by keyboard.
    row.get_by_role("link", name="Open image page").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("cat-prophoto.jpg")
    expect(page.locator(".kv")).to_contain_text("typed with keys")
    # Every gallery filter has a label.
    page.goto(server.base + "/gallery")
    for name in ("Top-1 class", "Tag", "Uploaded from", "Uploaded to"):
        expect(page.get_by_label(name)).to_be_editable()
