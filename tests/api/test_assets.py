"""Static files (UI scripts, API docs assets) are served whole: a Range header, however odd,
never gets Starlette's bare text/plain 400/416."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

ASSETS = ["/ui/static/upload.js", "/docs/assets/swagger-ui.css"]
RANGES = {
    "malformed": "\x01\x02",
    "other-unit": "items=0-1",
    "inverted": "bytes=9-1",
    "past-the-end": "bytes=99999999-",
    "suffix-twice": "bytes=--5",
    "empty-set": "bytes=",
    "suffix": "bytes=-5",
    "two": "bytes=0-1,5-9",
    "overlapping": "bytes=0-100,50-150,0-",
    "huge": "bytes=0-99999999999999999999999",
    "thousand": "bytes=" + ",".join(f"{i}-{i}" for i in range(1000)),
}


@pytest.mark.parametrize("path", ASSETS)
@pytest.mark.parametrize("case", sorted(RANGES))
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_range_gets_the_whole_file(client: TestClient, path: str, case: str, method: str) -> None:
    whole = client.get(path)
    assert whole.status_code == 200 and whole.content
    r = client.request(method, path, headers={"Range": RANGES[case], "If-Range": '"x"'})
    assert r.status_code == 200, (r.status_code, r.headers, r.text[:200])
    assert "accept-ranges" not in r.headers and "content-range" not in r.headers
    assert r.headers["content-length"] == str(len(whole.content))
    assert r.content == (whole.content if method == "GET" else b"")


@pytest.mark.parametrize("path", ASSETS)
def test_assets_still_answer_304(client: TestClient, path: str) -> None:
    etag = client.get(path).headers["etag"]
    assert (
        client.get(path, headers={"If-None-Match": etag, "Range": "bytes=9-1"}).status_code == 304
    )
