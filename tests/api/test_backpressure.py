"""Upload admission wiring and the body clock, in process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
from fastapi.testclient import TestClient

from imgest.api.body import BodyTimeouts, timed_body
from imgest.errors import RequestTimeout


def test_active_uploads_default_to_twice_the_decode_threads(
    make_client: Callable[..., TestClient],
) -> None:
    auto = make_client(workers=3)
    assert auto.app.state.admission.limits.max_active_uploads == 6  # type: ignore[attr-defined]
    fixed = make_client(workers=3, max_active_uploads=5)
    assert fixed.app.state.admission.limits.max_active_uploads == 5  # type: ignore[attr-defined]


def test_uploads_give_their_slot_back(client: TestClient, read: Callable[[str], bytes]) -> None:
    admission = client.app.state.admission  # type: ignore[attr-defined]
    ok = client.post("/v1/images", files=[("file", ("a.jpg", read("cat.jpg"), "image/jpeg"))])
    bad = client.post("/v1/images", content=b"x", headers={"Content-Type": "text/plain"})
    assert (ok.status_code, bad.status_code) == (201, 415)
    assert (admission.active, admission.queued, admission.inflight_bytes) == (0, 0, 0)


async def chunks(*steps: bytes | float) -> AsyncIterator[bytes]:
    for step in steps:
        if isinstance(step, float):
            await anyio.sleep(step)
        else:
            yield step


async def drain(body: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in body])


@pytest.mark.anyio
async def test_a_prompt_body_passes_and_is_counted() -> None:
    seen: list[int] = []
    body = timed_body(chunks(b"ab", 0.01, b"cd"), BodyTimeouts(0.5, 1024), seen.append)
    assert await drain(body) == b"abcd" and seen == [2, 2]


@pytest.mark.anyio
async def test_a_stall_is_a_408() -> None:
    with pytest.raises(RequestTimeout, match=r"No body data arrived for 0\.2 s after 2 bytes"):
        await drain(timed_body(chunks(b"ab", 5.0, b"cd"), BodyTimeouts(0.2, 0)))


@pytest.mark.anyio
async def test_a_trickle_is_a_408_once_the_grace_period_is_over() -> None:
    trickle = chunks(*[step for _ in range(20) for step in (b"x", 0.05)])
    with pytest.raises(RequestTimeout, match="slower than the minimum of 1024 bytes/s"):
        await drain(timed_body(trickle, BodyTimeouts(0.2, 1024)))
    # With no minimum rate, the same trickle is accepted.
    trickle = chunks(*[step for _ in range(20) for step in (b"x", 0.05)])
    assert len(await drain(timed_body(trickle, BodyTimeouts(0.2, 0)))) == 20


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
