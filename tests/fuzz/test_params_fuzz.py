"""Fuzz every query and path parameter of every route: a hostile value is a 4xx, never a 5xx.

The routes and their parameters are read from the app itself (the OpenAPI document for the
API, the UI router for the pages that the document leaves out), so a parameter added
later is fuzzed without touching this file. Each parameter gets each value of a fixed table of
known edges (dates at datetime.min/max with offsets, huge and negative numbers, NaN, junk and
forged cursors, very long strings, control and bidi characters) while the others keep sane
values, then hypothesis sends random text to all of them at once.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from imgest.api import ui
from imgest.app import create_app
from imgest.config import load_settings
from imgest.scoring.model import Model

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

ID = "0" * 64


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


HOSTILE = [
    "",
    "0001-01-01",
    "0001-01-01T00:00:00",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31",
    "9999-12-31T23:59:59.999999",
    "9999-12-31T23:59:59.999999-01:00",
    "9999-12-31T23:59:59-23:59",
    "10000-01-01",
    "-0001-01-01",
    "2026-02-30",
    "2026-13-01T25:61:61Z",
    "0",
    "-1",
    "-9223372036854775809",
    "9" * 400,
    "1e308",
    "-1e308",
    "NaN",
    "inf",
    "-inf",
    "true",
    "null",
    "a" * 30_000,  # httpx refuses URLs over 64 KiB
    "\x00",
    "a\x00b",
    "\x1b[31mred",
    "\r\nX-Injected: 1",
    "\u202egpj.exe",
    "\ud7ff\ufffd\U0010ffff",
    "😀" * 300,
    "%",
    "../../etc/passwd",
    "====",
    "not base64!",
    _cursor(b"\xff\xfe\xfd"),
    _cursor(b"no separator"),
    _cursor(b"2026-01-01T00:00:00|" + b"x" * 64),
    _cursor(b"2026-01-01T00:00:00|" + ID.encode() + b"\x00"),
    _cursor(b"0001-01-01T00:00:00+05:00|" + ID.encode()),
    _cursor(b"9999-12-31T23:59:59-05:00|" + ID.encode()),
    _cursor(b"9999-12-31T23:59:59.999999+00:00|" + ID.encode()),
    _cursor(b'{"created_at": 1e999, "id": null}'),
]


def _routes(app: Any) -> list[tuple[str, str, list[str], list[str]]]:
    """(method, path, path params, query params) of every GET/HEAD/POST/PATCH/DELETE route."""
    found: list[tuple[str, str, list[str], list[str]]] = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            found.append(
                (
                    method.upper(),
                    path,
                    [p["name"] for p in params if p["in"] == "path"],
                    [p["name"] for p in params if p["in"] == "query"],
                )
            )
    for route in ui.router.routes:  # the UI pages: not in the OpenAPI document
        if isinstance(route, APIRoute):
            dependant = route.dependant
            for method in sorted(route.methods):
                found.append(
                    (
                        method,
                        route.path,
                        [p.alias for p in dependant.path_params],
                        [p.alias for p in dependant.query_params],
                    )
                )
    return found


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("params-fuzz") / "catalog.db"
    settings = load_settings(
        storage_url="memory://",
        catalog_url=f"sqlite:///{db}",
        allowed_hosts=["testserver"],  # the TestClient's Host
    )
    app = create_app(settings, model=Model.bundled(threads=1))
    with TestClient(app, raise_server_exceptions=False) as c:
        for name in ("cat.jpg", "astronaut.jpg", "coffee.jpg"):  # rows to list and page over
            r = c.post("/v1/images", files={"file": (name, (data_dir / name).read_bytes())})
            assert r.status_code == 201, r.text
        yield c


@pytest.fixture(scope="module")
def cat_jpeg(data_dir: Path) -> bytes:
    return (data_dir / "cat.jpg").read_bytes()


def _call(
    client: TestClient,
    cat: bytes,
    method: str,
    path: str,
    path_values: dict[str, str],
    query: dict[str, str],
) -> None:
    url = re.sub(r"{(\w+)}", lambda m: quote(path_values.get(m[1], ID), safe=""), path)
    kwargs: dict[str, Any] = {"params": query}
    if method == "POST":
        kwargs["files"] = {"file": ("cat.jpg", cat, "image/jpeg")}
    elif method == "PATCH":
        kwargs["json"] = {}
    r = client.request(method, url, **kwargs)
    assert r.status_code < 500, (method, url, query, r.status_code, r.text[:500])
    if r.status_code >= 400 and method != "HEAD" and "json" in r.headers.get("content-type", ""):
        body = r.json()
        assert body["code"] and body["detail"], body


def _targets(client: TestClient) -> list[tuple[str, str, list[str], list[str]]]:
    routes = _routes(client.app)
    assert any(path == "/gallery" for _, path, _, _ in routes)  # the UI routes are in
    return routes


def test_every_parameter_survives_every_hostile_value(client: TestClient, cat_jpeg: bytes) -> None:
    tried = 0
    for method, path, path_params, query_params in _targets(client):
        for name in [*path_params, *query_params]:
            for value in HOSTILE:
                if name in path_params:
                    if value in ("", "%") or value.startswith("../"):
                        continue  # a different route (or none), not this parameter's value
                    _call(client, cat_jpeg, method, path, {name: value}, {})
                else:
                    _call(client, cat_jpeg, method, path, {}, {name: value})
                tried += 1
    assert tried > 500


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/gallery?to=9999-12-31", 200),
        ("/gallery?from=0001-01-01", 200),
        ("/v1/images?since=0001-01-01T00:00:00%2B01:00", 422),
        ("/v1/images?until=9999-12-31T23:59:59-01:00", 422),
        ("/v1/images?cursor=" + _cursor(b"0001-01-01T00:00:00+05:00|" + ID.encode()), 422),
        ("/v1/images?tag=a%00b", 422),
    ],
)
def test_the_reported_date_edges(client: TestClient, url: str, status: int) -> None:
    # Issue 14 item 9: each of these answered 500.
    r = client.get(url)
    assert r.status_code == status, r.text[:300]
    if status == 422:
        assert r.json()["code"] == "invalid_parameter"


_value = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40), st.integers().map(str))


@given(data=st.data())
def test_random_values_in_every_parameter_at_once(
    client: TestClient, cat_jpeg: bytes, data: st.DataObject
) -> None:
    method, path, path_params, query_params = data.draw(st.sampled_from(_targets(client)))
    query = {name: data.draw(_value) for name in query_params}
    path_values = {
        name: data.draw(st.text(min_size=1, max_size=80).filter(lambda s: s not in (".", "..")))
        for name in path_params
    }
    _call(client, cat_jpeg, method, path, path_values, query)
