"""Web UI pages without a browser: content, escaping, headers, filters, pages, errors."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from imgest.api import ui
from imgest.api.images import image_out
from tests.glossary import bare_labels


def put(client: TestClient, path: Path, name: str | None = None, **fields: Any) -> dict[str, Any]:
    files = [("file", (name or path.name, path.read_bytes(), "application/octet-stream"))]
    r = client.post("/v1/images", files=files, data=fields)
    assert r.status_code == 201, r.text
    image: dict[str, Any] = r.json()["images"][0]
    return image


def cards(html: str) -> list[str]:
    """The image ids linked from gallery cards, in page order."""
    return re.findall(r'<a class="card-link" href="/images/([0-9a-f]{64})"', html)


@pytest.mark.parametrize("path", ["/", "/gallery"])
def test_pages_are_html_with_a_strict_policy(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    policy = r.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert r.headers["x-content-type-options"] == "nosniff"
    assert '<meta name="viewport"' in r.text
    for asset in re.findall(r'(?:href|src)="(/ui/static/[^"?]+)', r.text):
        assert client.get(asset).status_code == 200, asset


def test_public_url_origin_is_allowed_for_images(make_client: Any) -> None:
    client = make_client(public_url="https://img.example.com/base")
    policy = client.get("/").headers["content-security-policy"]
    assert "img-src 'self' blob: https://img.example.com;" in policy


def test_upload_page_labels_every_control(client: TestClient) -> None:
    html = client.get("/").text
    for control in ("files", "description", "tags"):
        assert f'<label for="{control}"' in html
        assert f'id="{control}"' in html
    assert 'action="/v1/images"' in html  # without JS the form still posts to the API


def test_ui_routes_stay_out_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/gallery" not in paths and "/images/{image}" not in paths


def test_untrusted_text_is_escaped(client: TestClient, data_dir: Path) -> None:
    hostile = '<img src=x onerror="alert(1)">'
    image = put(
        client,
        data_dir / "cat.jpg",
        name=f"{hostile}.jpg",
        description="<script>alert(2)</script>",
        tags="<b>bold</b>",
    )
    for page in (client.get(f"/images/{image['id']}"), client.get("/gallery")):
        assert page.status_code == 200
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text
        assert "<b>bold" not in page.text
    detail = client.get(f"/images/{image['id']}").text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in detail
    assert "&lt;img src=x onerror=" in detail


def test_gallery_filters(client: TestClient, data_dir: Path) -> None:
    cat = put(client, data_dir / "cat.jpg", tags="pets")
    coffee = put(client, data_dir / "coffee.jpg", tags="food")
    assert cards(client.get("/gallery").text) == [coffee["id"], cat["id"]]
    assert cards(client.get("/gallery", params={"tag": "pets"}).text) == [cat["id"]]
    label = coffee["predictions"][0]["top"][0]["label"]
    assert cards(client.get("/gallery", params={"label": label}).text) == [coffee["id"]]
    day = cat["predictions"][0]["created_at"][:10]
    same_day = {"from": day, "to": day}
    assert len(cards(client.get("/gallery", params=same_day).text)) == 2
    later = client.get("/gallery", params={"from": "2999-01-01"})
    assert cards(later.text) == []
    assert "No images match these filters" in later.text
    earlier = client.get("/gallery", params={"to": "2000-01-01", "tag": "pets"})
    assert cards(earlier.text) == []


def test_gallery_offers_the_model_labels(client: TestClient) -> None:
    html = client.get("/gallery").text
    assert '<option value="tiger cat">' in html


def test_gallery_pages_with_the_api_cursor(
    client: TestClient, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui, "PAGE_SIZE", 2)
    ids = [put(client, data_dir / n, tags="t")["id"] for n in ("cat.jpg", "coffee.jpg", "cat.png")]
    first = client.get("/gallery", params={"tag": "t"}).text
    assert cards(first) == ids[::-1][:2]
    assert "First page" not in first
    found = re.search(r'href="(/gallery\?[^"]+)" rel="next"', first)
    assert found is not None
    next_url = found.group(1).replace("&amp;", "&")
    assert "tag=t" in next_url  # the filter survives paging
    second = client.get(next_url).text
    assert cards(second) == ids[:1]
    assert 'rel="next"' not in second
    assert "First page" in second


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "yesterday"}, "From is not a date of the form YYYY-MM-DD."),
        ({"to": "2026-13-01"}, "To is not a date of the form YYYY-MM-DD."),
        ({"cursor": "@@@"}, "The cursor is not one this server issued."),
    ],
)
def test_gallery_explains_bad_input(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    r = client.get("/gallery", params=params)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert message in r.text
    assert 'role="alert"' in r.text


def test_image_page_shows_what_the_api_has(client: TestClient, data_dir: Path) -> None:
    image = put(client, data_dir / "coffee.jpg", description="espresso bar", tags="food,drinks")
    html = client.get(f"/images/{image['id']}").text
    assert image["id"] in html
    assert f'src="/v1/images/{image["id"]}/original"' in html
    assert f'src="/v1/images/{image["id"]}/renditions/default"' in html
    assert "espresso bar" in html and "#food" in html and "#drinks" in html
    assert "600 \u00d7 400 px" in html
    for prediction in image["predictions"]:
        assert prediction["model"] in html
        for top in prediction["top"]:
            assert f'<span class="top-label" title="{top["label"]}">{top["label"]}' in html
    assert "not set" in html  # no ground-truth label yet
    assert 'id="truth"' in html and f'data-url="/v1/images/{image["id"]}"' in html
    assert "/ui/static/image.js" in html


def test_image_page_lists_unknown_fields_and_the_label(
    client: TestClient, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = put(client, data_dir / "cat.jpg")

    class View:
        def __init__(self, record: Any, links: Any) -> None:
            self.inner = image_out(record, links)

        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            return {**self.inner.model_dump(**kwargs), "label": "tabby", "quality": {"blur": 0.5}}

    monkeypatch.setattr(ui, "image_out", View)
    html = client.get(f"/images/{image['id']}").text
    assert "<strong>tabby</strong>" in html
    assert "<dt>quality</dt>" in html and "blur" in html


def test_image_page_for_a_format_browsers_cannot_show(client: TestClient, data_dir: Path) -> None:
    image = put(client, data_dir / "cat.tiff")
    html = client.get(f"/images/{image['id']}").text
    assert "Browsers do not show TIFF" in html
    assert 'alt="Original of' not in html
    assert f'href="/v1/images/{image["id"]}/original" download' in html


@pytest.mark.parametrize("image", ["0" * 64, "not-an-id"])
def test_missing_image_is_an_html_404(client: TestClient, image: str) -> None:
    r = client.get(f"/images/{image}")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Image not found" in r.text
    assert "content-security-policy" in r.headers


def test_human_sizes() -> None:
    assert ui.human_bytes(512) == "512 B"
    assert ui.human_bytes(1536) == "1.5 KiB"
    assert ui.human_bytes(50 * 1024 * 1024) == "50.0 MiB"
    assert ui.human_time("2026-11-25T21:41:07.123+00:00") == "2026-11-25 21:41 UTC"
    assert ui.human_time("2026-11-25T23:41:07+02:00") == "2026-11-25 21:41 UTC"
    assert ui.human_time("2026-11-25T21:41:07", zone=False) == "2026-11-25 21:41"


def card_html(html: str, image_id: str) -> str:
    """The gallery card of one image."""
    start = html.index(f'href="/images/{image_id}"')
    return html[start : html.index("</li>", start)]


def test_gallery_label_filter_finds_any_part_in_any_case(
    client: TestClient, data_dir: Path
) -> None:
    cat = put(client, data_dir / "cat.jpg")  # top-1: Egyptian cat
    coffee = put(client, data_dir / "coffee.jpg")  # top-1: espresso
    assert "cat" in cat["predictions"][0]["top"][0]["label"].lower()
    assert cards(client.get("/gallery", params={"label": "CAT"}).text) == [cat["id"]]
    assert cards(client.get("/gallery", params={"label": "Espress"}).text) == [coffee["id"]]
    assert cards(client.get("/gallery", params={"label": "%"}).text) == []  # not a wildcard
    # The API's label filter stays exact (scripts, rescore --where label=...).
    assert client.get("/v1/images", params={"label": "cat"}).json()["items"] == []


def test_low_confidence_predictions_are_marked_with_a_legend(
    client: TestClient, data_dir: Path
) -> None:
    cat = put(client, data_dir / "cat.jpg")
    coffee = put(client, data_dir / "coffee.jpg")
    low, high = (i["predictions"][0]["top"][0] for i in (cat, coffee))
    assert low["score"] < ui.MIN_SCORE <= high["score"], (low, high)
    gallery = client.get("/gallery").text
    assert 'class="legend' in gallery and "below 50.0 %" in gallery
    unsure = card_html(gallery, cat["id"])
    assert 'class="chip label unsure"' in unsure and 'class="unsure-mark"' in unsure
    assert f'title="{low["label"]} (' in unsure  # the full label, were it cut off
    sure = card_html(gallery, coffee["id"])
    assert 'class="chip label"' in sure and "unsure" not in sure
    page = client.get(f"/images/{cat['id']}").text
    assert (
        '<li class="unsure"><span class="top-name"><span class="top-label"' in page
        and 'class="legend' in page
    )
    assert '<li class="unsure">' not in client.get(f"/images/{coffee['id']}").text


def test_long_labels_have_the_whole_label_as_a_tooltip(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(out, "PNG")
    files = [("file", ("noise.png", out.getvalue(), "image/png"))]
    image = client.post("/v1/images", files=files).json()["images"][0]
    label = image["predictions"][0]["top"][0]["label"]
    gallery = card_html(client.get("/gallery").text, image["id"])
    assert f'title="{label} (' in gallery
    page = client.get(f"/images/{image['id']}").text
    for top in image["predictions"][0]["top"]:
        assert f'<span class="top-label" title="{top["label"]}">' in page


def test_pages_use_the_glossary_words(client: TestClient, data_dir: Path) -> None:
    """The UI says class, ground truth and top-1 filter, never the ambiguous bare "label"
    (docs/glossary.md); the form field and query parameter keep their API name."""
    image = put(client, data_dir / "coffee.jpg", label="espresso")
    pages = {
        path: client.get(path).text
        for path in ("/", "/gallery", "/gallery?label=espresso", f"/images/{image['id']}")
    }
    for path, html in pages.items():
        assert bare_labels(html) == [], path
    assert "Top-1 class" in pages["/gallery"] and 'name="label"' in pages["/gallery"]
    assert "Ground truth" in pages[f"/images/{image['id']}"]
    assert "Set ground truth" in pages[f"/images/{image['id']}"]


def test_image_page_shows_similar_images_linking_to_them(
    client: TestClient, data_dir: Path
) -> None:
    cat = put(client, data_dir / "cat.jpg")
    alone = client.get(f"/images/{cat['id']}").text
    assert "Similar images" in alone and "No other images stored yet." in alone
    copy = Image.open(data_dir / "cat.jpg").convert("RGB")
    out = io.BytesIO()
    copy.resize((300, 200)).save(out, "JPEG", quality=70)
    r = client.post("/v1/images", files=[("file", ("copy.jpg", out.getvalue(), "image/jpeg"))])
    copy_id = r.json()["images"][0]["id"]
    coffee = put(client, data_dir / "coffee.jpg")
    html = client.get(f"/images/{copy_id}").text
    section = html.split('id="similar-h"', 1)[1].split("</section>", 1)[0]
    links = re.findall(r'<a href="/images/([0-9a-f]{64})"><img src="([^"]+)"', section)
    assert [i for i, _ in links] == [cat["id"], coffee["id"]]  # most similar first, not itself
    assert links[0][1] == f"/v1/images/{cat['id']}/renditions/default"
    catalog = client.app.state.catalog  # type: ignore[attr-defined]
    from sqlalchemy import delete

    from imgest.catalog.models import EmbeddingRow

    with catalog.writing() as session:
        session.execute(delete(EmbeddingRow).where(EmbeddingRow.image_id == cat["id"]))
    html = client.get(f"/images/{cat['id']}").text
    assert "has no embedding" in html and "rescore" in html  # explained, the page still works
