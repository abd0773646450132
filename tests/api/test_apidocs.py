"""/docs and /redoc work without internet access: every asset they load is served here."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient


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
