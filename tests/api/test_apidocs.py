"""/docs and /redoc work without internet access: every asset they load is served here."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.glossary import listed


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//cdn", r.text), r.text
    urls = re.findall(r'(?:src|href|spec-url)="([^"]+)"', r.text)
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', r.text)
    assert scripts, r.text  # the page is not blank: it loads its renderer
    assert "<script>" not in r.text  # no inline script, so the CSP needs no 'unsafe-inline'
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "default-src 'self'" in csp
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    if page == "/docs":
        assert "/docs/assets/swagger-ui-bundle.js" in scripts
        assert "validatorUrl: null" in client.get("/docs/init.js").text
        assert "/openapi.json" in r.text


def test_api_names_with_label_are_in_the_glossary(client: TestClient) -> None:
    """A field or parameter named "label" means ground truth, a class or the top-1 filter:
    docs/glossary.md says which, for each one (new names use the glossary's words)."""
    spec = client.get("/openapi.json").json()
    names = {
        name
        for schema in spec["components"]["schemas"].values()
        for name in schema.get("properties", {})
    }
    names |= {
        p["name"]
        for path in spec["paths"].values()
        for op in path.values()
        if isinstance(op, dict)
        for p in op.get("parameters", [])
    }
    with_label = {n for n in names if "label" in n}
    assert "label" in with_label  # the image's ground truth, the top-k entry's class
    assert [n for n in sorted(with_label) if not listed(n)] == []
