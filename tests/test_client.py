"""imgest.client against a real `imgest serve` (and the fault proxy in front of it)."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgest.client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    NotFound,
    RetryPolicy,
    ServerUnreachable,
    Unavailable,
    default_url,
    retry_after,
)
from imgest.errors import ConfigError
from tests.services.fault_proxy import FaultProxy, Faults
from tests.services.imgest_server import Server, free_port
from tests.test_bulk import ground_truth

FAST = RetryPolicy(attempts=4, max_time=20, initial=0.01, max_wait=0.1, jitter=0.01)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("client-server"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def proxy(server: Server) -> Iterator[Callable[..., FaultProxy]]:
    started: list[FaultProxy] = []

    def make(script: list[str], retry_after: str = "0") -> FaultProxy:
        p = FaultProxy(server.port, faults=Faults(retry_after=retry_after), script=script)
        p.start()
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


def files_ingested(server: Server) -> int:
    value: int = httpx.get(f"{server.base}/readyz").json()["counters"]["files"]
    return value


def test_upload_read_list_download(server: Server, read: Callable[[str], bytes]) -> None:
    cat, coffee, rocket = read("cat.jpg"), read("coffee.jpg"), read("rocket.jpg")
    with Client(server.base, retry=FAST) as client:
        first = client.upload(
            io.BytesIO(cat), filename="cat.jpg", description="kitchen", tags=["pets", "indoor"]
        )
        assert first.status == "created" and first.sent and not first.replayed
        assert first.id == hashlib.sha256(cat).hexdigest()
        assert first.item is not None and sorted(first.item.tags) == ["indoor", "pets"]
        assert first.item.fields == {"description": "kitchen"}
        client.upload(coffee, filename="coffee.jpg", label="coffee mug")
        client.upload(rocket, filename="rocket.jpg")

        image = client.get(first.id)
        assert image.width == 451 and image.renditions["default"].width == 224
        stored = client.get(hashlib.sha256(coffee).hexdigest()).model_dump(mode="json")
        assert ground_truth(stored) == "coffee mug"
        listed = client.list_images(page_size=1)
        assert next(listed).id == hashlib.sha256(rocket).hexdigest()  # newest first, lazily
        assert len(list(client.list_images(page_size=2))) >= 3
        assert [i.id for i in client.list_images(tag="pets")] == [first.id]

        assert client.download(first.id) == cat
        rendition = client.download(first.id, pipeline="default")
        assert rendition[:2] == b"\xff\xd8" and len(rendition) == image.renditions["default"].bytes

        assert client.exists(first.id)
        assert not client.exists("0" * 64)
        with pytest.raises(NotFound) as missing:
            client.get("0" * 64)
        assert missing.value.code == "image_not_found" and missing.value.status == 404


def test_download_to_a_path_and_upload_from_a_path(
    server: Server, data_dir: Path, tmp_path: Path
) -> None:
    with Client(server.base, retry=FAST) as client:
        result = client.upload(data_dir / "astronaut.jpg")
        assert result.filename == "astronaut.jpg" and result.status in ("created", "existing")
        target = client.download_to(result.id, tmp_path / "copy.jpg")
        assert target.read_bytes() == (data_dir / "astronaut.jpg").read_bytes()
        assert not (tmp_path / "copy.jpg.part").exists()
        with pytest.raises(NotFound):
            client.download_to("0" * 64, tmp_path / "none.jpg")


def test_rejected_file_is_a_result(server: Server, read: Callable[[str], bytes]) -> None:
    with Client(server.base, retry=FAST) as client:
        result = client.upload(read("not-image.txt"), filename="notes.jpg")
    assert result.status == "rejected"
    assert result.error is not None and result.error.code == "unsupported_media_type"


def test_skip_existing_sends_no_bytes(
    server: Server, read: Callable[[str], bytes], proxy: Callable[..., FaultProxy]
) -> None:
    p = proxy([])
    with Client(p.url, retry=FAST) as client:
        client.upload(read("cat.jpg"), filename="cat.jpg")
        skipped = client.upload(read("cat.jpg"), filename="cat.jpg", skip_existing=True)
    assert skipped.status == "existing" and not skipped.sent
    assert [s.method for s in p.seen] == ["POST", "HEAD"]


def test_retry_honours_retry_after(
    server: Server, read: Callable[[str], bytes], proxy: Callable[..., FaultProxy]
) -> None:
    p = proxy(["503"], retry_after="1")
    started = time.monotonic()
    with Client(p.url, retry=FAST) as client:  # its own backoff would be ~0.01 s
        result = client.upload(read("coffee.jpg"), filename="coffee.jpg")
    assert time.monotonic() - started >= 1.0
    assert result.status in ("created", "existing")
    assert [s.fault for s in p.seen] == ["503", "pass"]


def test_lost_answer_is_replayed_not_redone(
    server: Server,
    read: Callable[[str], bytes],
    proxy: Callable[..., FaultProxy],
    encode: Callable[..., bytes],
    cat: object,
) -> None:

    assert isinstance(cat, Image.Image)
    fresh = encode(cat.rotate(7), "JPEG")
    p = proxy(["drop_response", "cut_response"])
    before = files_ingested(server)
    with Client(p.url, retry=FAST) as client:
        result = client.upload(fresh, filename="fresh.jpg")
    assert result.status == "created" and result.replayed
    assert [s.fault for s in p.seen] == ["drop_response", "cut_response", "pass"]
    assert files_ingested(server) == before + 1


def test_retries_are_bounded(
    server: Server, read: Callable[[str], bytes], proxy: Callable[..., FaultProxy]
) -> None:
    p = proxy(["503"] * 10)
    with Client(p.url, retry=FAST) as client, pytest.raises(Unavailable) as failed:
        client.upload(read("cat.jpg"))
    assert failed.value.code == "service_unavailable" and failed.value.status == 503
    assert len(p.seen) == FAST.attempts

    with (
        Client(f"http://127.0.0.1:{free_port()}", retry=FAST) as client,
        pytest.raises(ConnectionFailed),
    ):
        client.get("0" * 64)


def test_retry_after_forms() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": value})

    assert retry_after(answer("3")) == 3.0
    assert retry_after(answer("Thu, 01 Jan 1970 00:00:00 GMT")) == 0.0
    assert retry_after(answer("soon")) is None
    assert retry_after(httpx.Response(503)) is None


def test_api_key_from_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(404, json={"code": "image_not_found", "detail": "no"})

    transport = httpx.MockTransport(handler)
    with Client("http://imgest.test", api_key="s3cret", transport=transport) as client:
        assert not client.exists("0" * 64)
    monkeypatch.setenv("IMGEST_API_KEY", "from-env")
    with Client("http://imgest.test", transport=transport) as client:
        assert not client.exists("0" * 64)
    monkeypatch.delenv("IMGEST_API_KEY")
    with Client("http://imgest.test", transport=transport) as client:
        assert not client.exists("0" * 64)
    assert seen == ["Bearer s3cret", "Bearer from-env", None]


@pytest.mark.anyio
async def test_async_client(
    server: Server,
    proxy: Callable[..., FaultProxy],
    tmp_path: Path,
    encode: Callable[..., bytes],
    cat: Image.Image,
) -> None:
    p = proxy(["drop_request", "503", "cut_response"])
    rocket = encode(cat.rotate(13), "JPEG")  # bytes no other test uploads
    async with AsyncClient(p.url, retry=FAST) as client:
        result = await client.upload(rocket, filename="rocket.jpg", tags=["space"])
        assert result.status == "created" and result.replayed
        assert result.id == hashlib.sha256(rocket).hexdigest()
        assert [s.fault for s in p.seen][:3] == ["drop_request", "503", "cut_response"]
        assert await client.exists(result.id)
        assert (await client.get(result.id)).id == result.id
        ids = [i.id async for i in client.list_images(page_size=1, tag="space")]
        assert ids == [result.id]
        assert await client.download(result.id) == rocket
        path = await client.download_to(result.id, tmp_path / "r.jpg", pipeline="default")
        assert path.read_bytes()[:2] == b"\xff\xd8"
        again = await client.upload(rocket, filename="rocket.jpg", skip_existing=True)
        assert again.status == "existing" and not again.sent
        with pytest.raises(NotFound):
            await client.get("f" * 64)
        # the same methods as Client (docs/client.md)
        found = await client.similar(result.id, k=5)
        assert result.id not in {i.id for i in found.items}
        query = await client.similar_to(rocket, k=5, filename="q.jpg")
        assert query.items[0].id == result.id and query.items[0].score > 0.999
        with pytest.raises(NotFound):
            await client.similar("f" * 64)
    assert {n for n in dir(Client) if not n.startswith("_")} <= set(dir(AsyncClient))


def test_a_stopped_server_is_reported_within_seconds_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(url) as client, pytest.raises(ServerUnreachable) as failed:
        client.upload(b"\xff\xd8\xff", filename="a.jpg")  # the default policy: 8 attempts
    elapsed = time.monotonic() - started
    assert str(failed.value) == f"cannot reach imgest at {url} (connection refused)"
    assert failed.value.url == url and failed.value.reason == "connection refused"
    # retried for RetryPolicy.connect_max_time (5 s), not the 8 attempts' ~64 s
    assert 1.0 < elapsed < 7.0, elapsed


@pytest.mark.anyio
async def test_async_client_reports_a_stopped_server_too() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    policy = RetryPolicy(connect_max_time=1.0)
    started = time.monotonic()
    async with AsyncClient(url, retry=policy) as client:
        with pytest.raises(ServerUnreachable, match="connection refused"):
            await client.exists("0" * 64)
    assert time.monotonic() - started < 3.0
    with Client(url) as sync:
        assert sync.http.timeout.connect == 3.0 and sync.http.timeout.read == 60.0


def test_server_url_from_argument_then_imgest_url_then_imgest_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IMGEST_URL", raising=False)
    monkeypatch.delenv("IMGEST_PORT", raising=False)
    assert default_url() == "http://127.0.0.1:8000"
    monkeypatch.setenv("IMGEST_PORT", "8123")
    assert default_url() == "http://127.0.0.1:8123"
    with Client() as client:
        assert str(client.http.base_url) == "http://127.0.0.1:8123"
    monkeypatch.setenv("IMGEST_URL", "http://img.test:9000/")
    assert default_url() == "http://img.test:9000/"
    with Client() as client:
        assert client.options.base_url == "http://img.test:9000"
    with Client("http://other.test") as client:
        assert client.options.base_url == "http://other.test"
    monkeypatch.delenv("IMGEST_URL")
    monkeypatch.setenv("IMGEST_PORT", "eighty")
    with pytest.raises(ConfigError, match="IMGEST_PORT='eighty' is not a port number"):
        default_url()


def test_similar_by_id_and_by_query_file(
    server: Server, read: Callable[[str], bytes], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from imgest.cli import app

    cat = Image.open(io.BytesIO(read("cat.jpg"))).convert("RGB")
    out = io.BytesIO()
    cat.resize((240, 160)).save(out, "JPEG", quality=55)
    with Client(server.base, retry=FAST) as client:
        original = client.upload(read("cat.jpg"), filename="cat.jpg")
        copy = client.upload(out.getvalue(), filename="small-cat.jpg")
        assert copy.item is not None  # (the module's server holds other cat copies too)
        assert original.id in {d.id for d in copy.item.near_duplicates}
        found = client.similar(copy.id, k=50)
        assert original.id in {i.id for i in found.items} and found.model == "efficientnet-lite0"
        assert copy.id not in {i.id for i in found.items}
        query = client.similar_to(out.getvalue(), k=50, filename="q.jpg")
        assert query.items[0].score == pytest.approx(1.0, abs=1e-3)  # its own bytes are stored
        assert copy.id in {i.id for i in query.items if i.score > 0.999}
        with pytest.raises(NotFound):
            client.similar("0" * 64)
    (tmp_path / "q.jpg").write_bytes(read("cat.jpg"))
    runner = CliRunner()
    by_id = runner.invoke(app, ["similar", copy.id, "-k", "50", "--url", server.base])
    assert by_id.exit_code == 0, by_id.output
    assert original.id in by_id.stdout.split()[::2]
    by_file = runner.invoke(
        app, ["similar", "--file", str(tmp_path / "q.jpg"), "-k", "50", "--url", server.base]
    )
    assert by_file.exit_code == 0, by_file.output
    assert f"{original.id}  1.0000" in by_file.stdout.splitlines()
    assert runner.invoke(app, ["similar", "--url", server.base]).exit_code == 2
