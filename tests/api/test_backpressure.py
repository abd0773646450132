"""Upload admission wiring and the body clock, in process."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message

from imgest.api.body import BodyClock, BodyTimeouts
from imgest.errors import RequestTimeout, RequestTooLarge


def test_active_uploads_default_to_twice_the_decode_threads(
    make_client: Callable[..., TestClient],
) -> None:
    auto = make_client(workers=3)
    assert auto.app.state.admission.limits.max_active_uploads == 6  # type: ignore[attr-defined]
    fixed = make_client(workers=3, max_active_uploads=5)
    assert fixed.app.state.admission.limits.max_active_uploads == 5  # type: ignore[attr-defined]


def test_uploads_and_on_demand_renditions_share_one_renderer(
    make_client: Callable[..., TestClient],
) -> None:
    state = make_client(workers=3).app.state  # type: ignore[attr-defined]
    assert state.corpus.renderer is state.ingest.renderer
    assert state.ingest.renderer.cpu.total_tokens == 3


def test_uploads_give_their_slot_back(client: TestClient, read: Callable[[str], bytes]) -> None:
    admission = client.app.state.admission  # type: ignore[attr-defined]
    ok = client.post("/v1/images", files=[("file", ("a.jpg", read("cat.jpg"), "image/jpeg"))])
    bad = client.post("/v1/images", content=b"x", headers={"Content-Type": "text/plain"})
    assert (ok.status_code, bad.status_code) == (201, 415)
    assert (admission.active, admission.queued, admission.inflight_bytes) == (0, 0, 0)


def receiving(*steps: bytes | float) -> Callable[[], Awaitable[Message]]:
    """An ASGI receive that sends `steps` (bytes: a chunk, float: a pause), the last chunk
    with more_body=False."""
    queue = list(steps)

    async def receive() -> Message:
        while queue and isinstance(queue[0], float):
            await anyio.sleep(queue.pop(0))  # type: ignore[arg-type]
        chunk = queue.pop(0)
        assert isinstance(chunk, bytes)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    return receive


async def drain(clock: BodyClock) -> bytes:
    body = b""
    while True:
        message = await clock()
        body += message["body"]
        if not message["more_body"]:
            return body


@pytest.mark.anyio
async def test_a_prompt_body_passes_and_is_counted() -> None:
    seen: list[int] = []
    clock = BodyClock(receiving(b"ab", 0.01, b"cd"), BodyTimeouts(0.5, 1024), 100, seen.append)
    assert await drain(clock) == b"abcd" and seen == [2, 2] and clock.complete


@pytest.mark.anyio
async def test_a_stall_is_a_408() -> None:
    with pytest.raises(RequestTimeout, match=r"No body data arrived for 0\.2 s after 2 bytes"):
        await drain(BodyClock(receiving(b"ab", 5.0, b"cd"), BodyTimeouts(0.2, 0), 100))


@pytest.mark.anyio
async def test_a_trickle_is_a_408_once_the_grace_period_is_over() -> None:
    trickle = [step for _ in range(20) for step in (b"x", 0.05)][:-1]
    with pytest.raises(RequestTimeout, match="slower than the minimum of 1024 bytes/s"):
        await drain(BodyClock(receiving(*trickle), BodyTimeouts(0.2, 1024), 100))
    # With no minimum rate, the same trickle is accepted.
    assert len(await drain(BodyClock(receiving(*trickle), BodyTimeouts(0.2, 0), 100))) == 20


@pytest.mark.anyio
async def test_a_body_past_the_cap_is_a_413() -> None:
    with pytest.raises(RequestTooLarge, match="larger than 3 bytes"):
        await drain(BodyClock(receiving(b"ab", b"cd"), BodyTimeouts(1, 0), 3))
    assert await drain(BodyClock(receiving(b"ab", b"c"), BodyTimeouts(1, 0), 3)) == b"abc"


def test_a_hung_store_answers_503_in_time(client: TestClient, read: Callable[[str], bytes]) -> None:
    from imgest.storage.base import BlobMeta, PutMode
    from imgest.storage.memory import MemoryStore
    from imgest.storage.timeout import TimeoutStore

    class HungStore(MemoryStore):
        async def put(self, path: str, data: bytes, *, mode: PutMode = "overwrite") -> BlobMeta:
            await anyio.sleep_forever()
            raise AssertionError

    ingest = client.app.state.ingest  # type: ignore[attr-defined]
    ingest.store = TimeoutStore(HungStore(), seconds=0.3)
    started = time.monotonic()
    r = client.post("/v1/images", files=[("file", ("a.jpg", read("cat.jpg"), "image/jpeg"))])
    assert r.status_code == 503
    assert r.json()["code"] == "storage_unavailable"
    assert r.headers["retry-after"] == "2"
    assert time.monotonic() - started < 5
    assert client.get("/v1/images").json()["items"] == []  # nothing recorded


def test_a_stalled_upload_gets_408_and_gives_its_slot_back(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(body_idle_timeout_s=0.3)
    admission = client.app.state.admission  # type: ignore[attr-defined]
    boundary = "b0undary"
    first = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/images",
        "raw_path": b"/v1/images",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
            (b"content-length", b"100000"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    held: list[int] = []
    sent: list[Message] = []

    async def stall() -> Message:
        if not held:
            held.append(admission.active)
            return {"type": "http.request", "body": first.encode() + b"\xff\xd8", "more_body": True}
        held.append(admission.active)
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        with anyio.fail_after(5):
            await client.app(scope, stall, send)

    started = time.monotonic()
    client.portal.call(run)  # type: ignore[union-attr]
    assert time.monotonic() - started < 3
    assert sent[0]["status"] == 408 and b"request_timeout" in sent[1]["body"]
    assert held[-1] == 1  # it held a slot while its body was arriving...
    assert (admission.active, admission.queued, admission.inflight_bytes) == (0, 0, 0)  # ...no more
