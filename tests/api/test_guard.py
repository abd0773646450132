"""The request guard, in process: every route of the app (each operation of the OpenAPI
document, plus the routes kept out of it: UI pages, static files, /metrics, the docs) gets the
head cap, auth before any body, the body cap and the body clock, from the one middleware.

The routes are read from the app itself, so a route added later is walked here without new
test code. Each request is driven through the app's ASGI interface with a `receive` the test
controls, so "the body was never read" and "the refusal came within the idle timeout" are
measured, not inferred from a status.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount
from starlette.types import Message, Scope

from imgest.api.guard import PROBE_PATHS, STREAMED

IDLE = 0.3
SMALL_CAP = 1024  # max_body_bytes
UPLOAD_CAP = 8192  # max_request_bytes
LIMITS = {
    "max_body_bytes": SMALL_CAP,
    "max_request_bytes": UPLOAD_CAP,
    "body_idle_timeout_s": IDLE,
    "body_min_bytes_per_s": 0,
}
BOUNDARY = "guard"
PART_START = (
    f"--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
    "Content-Type: image/jpeg\r\n\r\n"
).encode()
IMAGE_ID = "ab" * 32
HUGE = 100 * 1024 * 1024


def concrete(template: str) -> str:
    """A request path for a route template ({image} a well-formed id, others a word)."""
    path = template.replace("{image}", IMAGE_ID).replace("{pipeline}", "default")
    return re.sub(r"\{[^}]+\}", "x", path)


def every_route(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every operation in the OpenAPI document and every mounted route."""
    found = {
        (method.upper(), concrete(path))
        for path, operations in app.openapi().get("paths", {}).items()
        for method in operations
    }
    pending = list(app.routes)
    while pending:
        route = pending.pop()
        if isinstance(route, Mount):
            found.add(("GET", route.path + "/ui.css"))
        elif hasattr(route, "original_router"):  # an included router (FastAPI 0.16x)
            pending.extend(route.original_router.routes)
        else:
            for method in getattr(route, "methods", None) or ():
                found.add((method, concrete(route.path)))
    assert found, "no routes found: the walk no longer sees the app's routes"
    return sorted(found)


@dataclass
class Answer:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reads: int = 0  # receive() calls the app (and the guard) made
    bytes_read: int = 0
    seconds: float = 0.0


Receive = Callable[[], Awaitable[Message]]


def never() -> Receive:
    async def receive() -> Message:
        raise AssertionError("the body was read")

    return receive


def stalling(first: bytes) -> Receive:
    """One chunk, then nothing at all."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": first, "more_body": True}
        await anyio.sleep_forever()
        raise AssertionError

    return receive


def flooding(first: bytes, chunk: int = 512) -> Receive:
    """`first`, then chunks of x for ever."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        body = first if not sent else b"x" * chunk
        sent = True
        return {"type": "http.request", "body": body, "more_body": True}

    return receive


def http_scope(method: str, path: str, headers: list[tuple[str, str]]) -> Scope:
    """An ASGI HTTP scope as uvicorn builds it, from the TestClient's host."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }


def call(
    client: TestClient,
    method: str,
    path: str,
    headers: dict[str, str],
    receive: Receive,
    timeout: float = 10.0,
) -> Answer:
    """Drive one request through the app's ASGI interface; what it answered and read."""
    answer = Answer()

    async def counted() -> Message:
        message = await receive()
        answer.reads += 1
        answer.bytes_read += len(message.get("body", b""))
        return message

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    scope = http_scope(method, path, list(headers.items()))

    async def run() -> None:
        started = time.monotonic()
        with anyio.fail_after(timeout):
            await client.app(scope, counted, send)
        answer.seconds = time.monotonic() - started

    assert client.portal is not None
    client.portal.call(run)
    return answer


def code(answer: Answer) -> str:
    import json

    value: str = json.loads(answer.body)["code"]
    return value


def body_headers(length: int | None) -> dict[str, str]:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    if length is None:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(length)
    return headers


@pytest.fixture
def secured(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(auth="keys", **LIMITS)


@pytest.fixture
def open_app(make_client: Callable[..., TestClient]) -> TestClient:
    """Auth off: the web UI is served, so its routes are walked too."""
    return make_client(**LIMITS)


def admin_of(client: TestClient) -> dict[str, str]:
    token = client.app.state.keys.create(["admin"]).token  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


def cap_of(method: str, path: str) -> int:
    return UPLOAD_CAP if (method, path) in STREAMED else SMALL_CAP


def test_the_walk_sees_the_api_the_ui_and_the_hidden_routes(
    secured: TestClient, open_app: TestClient
) -> None:
    routes = set(every_route(open_app.app))  # type: ignore[arg-type]
    for expected in [
        ("POST", "/v1/images"),
        ("PATCH", f"/v1/images/{IMAGE_ID}"),
        ("PATCH", "/v1/images"),
        ("DELETE", f"/v1/images/{IMAGE_ID}"),
        ("GET", f"/v1/images/{IMAGE_ID}/renditions/default"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/gallery"),
        ("GET", "/ui/static/ui.css"),
    ]:
        assert expected in routes
    assert ("GET", "/gallery") not in set(every_route(secured.app))  # type: ignore[arg-type]


def test_every_route_authenticates_before_reading_any_body(secured: TestClient) -> None:
    for method, path in every_route(secured.app):  # type: ignore[arg-type]
        if path in PROBE_PATHS:
            continue  # open by design (docs/security.md)
        answer = call(secured, method, path, body_headers(HUGE), never())
        assert answer.status == 401, (method, path, answer.body)
        assert answer.reads == 0
        assert answer.headers["connection"] == "close"  # the 100 MiB are not waited for
        assert code(answer) == "auth_required"
        assert answer.seconds < 2.0


@pytest.mark.parametrize("auth", ["keys", "off"])
def test_every_route_refuses_a_declared_length_over_its_cap_unread(
    make_client: Callable[..., TestClient], auth: str
) -> None:
    client = make_client(auth=auth, **LIMITS)
    key = admin_of(client)
    for method, path in every_route(client.app):  # type: ignore[arg-type]
        length = cap_of(method, path) + 1
        answer = call(client, method, path, {**key, **body_headers(length)}, never())
        assert answer.status == 413, (method, path, answer.body)
        assert code(answer) == "request_too_large"
        assert answer.reads == 0


@pytest.mark.parametrize("auth", ["keys", "off"])
def test_every_route_stops_reading_a_chunked_body_at_its_cap(
    make_client: Callable[..., TestClient], auth: str
) -> None:
    client = make_client(auth=auth, **LIMITS)
    key = admin_of(client)
    for method, path in every_route(client.app):  # type: ignore[arg-type]
        answer = call(client, method, path, {**key, **body_headers(None)}, flooding(PART_START))
        assert answer.status == 413, (method, path, answer.body)
        assert code(answer) == "request_too_large"
        assert answer.bytes_read <= cap_of(method, path) + 512  # one chunk past the cap


@pytest.mark.parametrize("auth", ["keys", "off"])
def test_every_route_times_out_a_stalled_body(
    make_client: Callable[..., TestClient], auth: str
) -> None:
    client = make_client(auth=auth, **LIMITS)
    key = admin_of(client)
    for method, path in every_route(client.app):  # type: ignore[arg-type]
        answer = call(client, method, path, {**key, **body_headers(1000)}, stalling(PART_START))
        assert answer.status == 408, (method, path, answer.body)
        assert code(answer) == "request_timeout"
        assert answer.headers["connection"] == "close"
        assert answer.seconds < IDLE + 1.0


@pytest.mark.parametrize("auth", ["keys", "off"])
def test_every_route_refuses_a_request_head_over_the_cap(
    make_client: Callable[..., TestClient], auth: str
) -> None:
    client = make_client(auth=auth, **LIMITS)
    key = admin_of(client)
    big = {"X-Padding": "p" * 16 * 1024}  # with the rest, just over the 16 KiB default
    for method, path in every_route(client.app):  # type: ignore[arg-type]
        answer = call(client, method, path, {**key, **big}, never())
        assert answer.status == 431, (method, path, answer.body)
        assert code(answer) == "request_head_too_large"
        assert answer.reads == 0
    fits = call(client, "GET", "/healthz", {"X-Padding": "p" * 15 * 1024}, never())
    assert fits.status == 200


def test_a_small_json_body_still_reaches_its_route(
    make_client: Callable[..., TestClient], read: Callable[[str], bytes]
) -> None:
    secured = make_client(auth="keys", max_body_bytes=SMALL_CAP)
    key = admin_of(secured)
    files = [("file", ("cat.jpg", read("cat.jpg"), "image/jpeg"))]
    image = secured.post("/v1/images", files=files, headers=key).json()["images"][0]["id"]
    r = secured.patch(f"/v1/images/{image}", json={"label": "cat"}, headers=key)
    assert r.status_code == 200 and r.json()["label"] == "cat"
    too_big = secured.patch(
        f"/v1/images/{image}", json={"description": "d" * SMALL_CAP}, headers=key
    )
    assert too_big.status_code == 413 and too_big.json()["code"] == "request_too_large"


def call_raw(client: TestClient, method: str, path: str, headers: list[tuple[str, str]]) -> Answer:
    """`call` with header pairs (a name may repeat), a body announced and never read."""
    answer = Answer()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    async def receive() -> Message:
        answer.reads += 1
        raise AssertionError("the body was read")

    scope = http_scope(method, path, [("content-length", "100"), *headers])
    assert client.portal is not None
    client.portal.call(client.app, scope, receive, send)
    return answer


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
TWICE = {
    "content-type": [("Content-Type", MULTIPART), ("Content-Type", "text/plain")],
    "authorization": [("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
    "idempotency-key": [("Idempotency-Key", "k1"), ("Idempotency-Key", "k2")],
    "content-encoding": [("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
}


@pytest.mark.parametrize("header", sorted(TWICE))
def test_every_route_refuses_a_header_that_comes_once_sent_twice(
    open_app: TestClient, header: str
) -> None:
    """Which of two Content-Types (or keys) counts? This server read the first, a proxy in
    front may read the last: an upload with multipart first and text/plain second was
    accepted. Now neither is guessed."""
    for method, path in every_route(open_app.app):  # type: ignore[arg-type]
        answer = call_raw(open_app, method, path, TWICE[header])
        assert answer.status == 400, (method, path, answer.body)
        assert code(answer) == "malformed_request" and header in answer.body.decode()
        assert answer.reads == 0


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate, gzip", "x-unknown"])
def test_every_route_refuses_a_body_in_a_content_coding(open_app: TestClient, coding: str) -> None:
    """A gzip body was parsed as if plain (400 malformed_multipart from the parser), and a
    plain body labelled gzip was stored (201): the coding is refused before the body is read."""
    for method, path in every_route(open_app.app):  # type: ignore[arg-type]
        headers = [("Content-Type", MULTIPART), ("Content-Encoding", coding)]
        answer = call_raw(open_app, method, path, headers)
        assert answer.status == 415, (method, path, answer.body)
        assert code(answer) == "unsupported_content_encoding" and answer.reads == 0


def test_identity_coding_and_a_bodiless_coding_header_pass(open_app: TestClient) -> None:
    gif = (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00"
        b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )
    files = [("file", ("dot.gif", gif, "image/gif"))]
    r = open_app.post("/v1/images", files=files, headers={"Content-Encoding": "identity"})
    assert r.status_code == 201, r.text
    assert open_app.get("/healthz", headers={"Content-Encoding": "gzip"}).status_code == 200
