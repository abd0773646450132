"""A real `imgest serve` with auth, JSON logs and tight limits, driven over real sockets.

Slow clients (headers, bodies of every route, downloads that are not read), request heads
over the cap, unauthenticated and oversized bodies (bounded in RSS and time), saturation (503
server_busy and 429 rate_limited with Retry-After while admitted uploads complete), JSON access
logs with request ids, and no token in any log line.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from imgest.catalog.keys import KeyStore
from imgest.catalog.repo import Catalog
from tests.services.imgest_server import Server

BOUNDARY = "imgest-test-boundary"
SETTINGS = {
    "IMGEST_AUTH": "keys",
    "IMGEST_LOG_FORMAT": "json",
    "IMGEST_HEADER_TIMEOUT_S": "1",
    "IMGEST_BODY_IDLE_TIMEOUT_S": "1",
    "IMGEST_BODY_MIN_BYTES_PER_S": "1024",
    "IMGEST_MAX_ACTIVE_UPLOADS": "1",
    "IMGEST_MAX_QUEUED_UPLOADS": "1",
    "IMGEST_MAX_UPLOADS_PER_CLIENT": "1",
    "IMGEST_QUEUE_TIMEOUT_S": "20",
    "IMGEST_RETRY_AFTER_S": "3",
    "IMGEST_METRICS": "open",  # the gauges below are read without a key
    "IMGEST_SEND_TIMEOUT_S": "1",
}
MiB = 1024 * 1024


@dataclass
class Hardened:
    server: Server
    tokens: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def auth(self, i: int = 0) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[i]}"}


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hardened]:
    root = tmp_path_factory.mktemp("hardened")
    server = Server(root, env=SETTINGS, log_level="info")
    catalog = Catalog.open(f"sqlite:///{server.var / 'catalog.db'}")
    keys = KeyStore(catalog)
    tokens = [keys.create(["upload", "read"], name=f"client {i}").token for i in range(10)]
    catalog.close()
    server.start()
    try:
        yield Hardened(server, tokens)
    finally:
        server.stop()


def multipart(filename: str, data: bytes) -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def open_upload(port: int, token: str, length: int) -> http.client.HTTPConnection:
    """An upload whose headers are sent and whose body the caller sends (or doesn't)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/v1/images")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    return conn


class SlowUpload(threading.Thread):
    """Sends a real upload at about 40 KiB/s (above the minimum rate), holding its slot."""

    def __init__(self, port: int, token: str, body: bytes) -> None:
        super().__init__()
        self.port, self.token, self.body = port, token, body
        self.status: int | None = None
        self.started_sending = threading.Event()

    def run(self) -> None:
        conn = open_upload(self.port, self.token, len(self.body))
        for offset in range(0, len(self.body), 4096):
            conn.send(self.body[offset : offset + 4096])
            self.started_sending.set()
            time.sleep(0.1)
        self.status = conn.getresponse().status
        conn.close()


def gauge(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_saturation_answers_503_and_429_quickly_while_admitted_uploads_complete(
    hardened: Hardened, read: Callable[[str], bytes]
) -> None:
    base = hardened.server.base
    cat = read("cat.jpg")
    # Bytes after a JPEG's end marker are ignored by decoders: each body is a distinct image
    # that takes ~2 s to send at the holder's pace.
    active = SlowUpload(hardened.port, hardened.tokens[0], multipart("a.jpg", cat + b"A" * 70_000))
    queued = SlowUpload(hardened.port, hardened.tokens[1], multipart("b.jpg", cat + b"B" * 70_000))
    active.start()
    active.started_sending.wait(10)
    wait_until(lambda: gauge(base, "imgest_uploads_active") == 1)
    queued.start()
    wait_until(lambda: gauge(base, "imgest_uploads_queued") == 1)

    files = [("file", ("c.jpg", cat + b"C", "image/jpeg"))]
    started = time.monotonic()
    busy = httpx.post(f"{base}/v1/images", files=files, headers=hardened.auth(2), timeout=10)
    busy_elapsed = time.monotonic() - started
    started = time.monotonic()
    limited = httpx.post(f"{base}/v1/images", files=files, headers=hardened.auth(0), timeout=10)
    limited_elapsed = time.monotonic() - started

    assert busy.status_code == 503, busy.text
    assert busy.json()["code"] == "server_busy"
    assert busy.headers["retry-after"] == "3"
    assert busy_elapsed < 1.0
    assert limited.status_code == 429, limited.text
    assert limited.json()["code"] == "rate_limited"
    assert limited.headers["retry-after"] == "3"
    assert limited_elapsed < 1.0

    active.join(30)
    queued.join(30)
    assert (active.status, queued.status) == (201, 201)
    assert gauge(base, "imgest_uploads_active") == 0
    metrics = httpx.get(f"{base}/metrics").text
    assert 'imgest_problems_total{code="server_busy"} 1.0' in metrics
    assert 'imgest_problems_total{code="rate_limited"} 1.0' in metrics


def read_response(sock: socket.socket) -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response


def test_a_stalled_body_gets_408_in_time_and_the_server_stays_responsive(
    hardened: Hardened,
) -> None:
    body = multipart("stall.jpg", b"\xff\xd8" + b"x" * 1000)
    head = (
        "POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {hardened.tokens[3]}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=10) as sock:
        sock.sendall(head.encode() + body[:40])  # a few bytes, then nothing
        started = time.monotonic()
        assert httpx.get(f"{hardened.server.base}/healthz", timeout=2).status_code == 200
        response = read_response(sock)
        elapsed = time.monotonic() - started
        assert response.status == 408
        assert response.getheader("connection") == "close"
        assert json.loads(response.read())["code"] == "request_timeout"
        assert elapsed < 4.0  # the idle timeout is 1 s
        sock.settimeout(2.0)  # well under the 5 s keep-alive timeout
        assert sock.recv(1) == b""  # the server hung up instead of waiting for the rest
    assert httpx.get(f"{hardened.server.base}/healthz", timeout=2).status_code == 200


def test_a_trickling_body_gets_408_for_its_rate(hardened: Hardened) -> None:
    body = multipart("drip.jpg", b"\xff\xd8" + b"x" * 5000)
    conn = open_upload(hardened.port, hardened.tokens[4], len(body))
    started = time.monotonic()
    assert conn.sock is not None
    conn.sock.settimeout(0.3)
    status = None
    # One byte every 0.3 s never trips the 1 s idle timeout, only the 1 KiB/s minimum rate.
    for i in range(len(body)):
        try:
            conn.send(body[i : i + 1])
            conn.sock.recv(1, socket.MSG_PEEK)  # anything back? (the 408)
            break
        except TimeoutError:
            continue
        except OSError:
            break
        finally:
            assert time.monotonic() - started < 10, "no 408 for a 3 bytes/s body"
    conn.sock.settimeout(5)
    status = read_response(conn.sock).status
    assert status == 408
    assert 1.0 <= time.monotonic() - started < 10
    conn.close()


def test_slow_headers_are_cut_off(hardened: Hardened) -> None:
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no end of headers
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server
        elapsed = time.monotonic() - started
    assert elapsed < 3.0  # the header timeout is 1 s (the keep-alive timeout is 5 s)
    assert httpx.get(f"{hardened.server.base}/healthz", timeout=2).status_code == 200


def test_slow_headers_of_a_second_request_on_a_kept_alive_connection_are_cut_off(
    hardened: Hardened,
) -> None:
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = read_response(sock)
        assert first.status == 200
        first.read()
        time.sleep(0.8)  # most of a header timeout spent idle: the clock restarts per request
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        assert sock.recv(1024) == b""
        elapsed = time.monotonic() - started
    assert elapsed < 3.0


def test_json_logs_carry_request_ids_and_no_secrets(
    hardened: Hardened, read: Callable[[str], bytes]
) -> None:
    base = hardened.server.base
    token = hardened.tokens[5]
    data = read("rocket.jpg")
    r = httpx.post(
        f"{base}/v1/images",
        files=[("file", ("rocket.jpg", data, "image/jpeg"))],
        headers={**hardened.auth(5), "X-Request-ID": "req-upload-42"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert r.headers["x-request-id"] == "req-upload-42"
    image = r.json()["images"][0]["id"]
    denied = httpx.get(f"{base}/v1/images/{image}", headers={"X-Request-ID": "bad id!"})
    assert denied.status_code == 401
    generated = denied.headers["x-request-id"]
    assert generated != "bad id!" and len(generated) == 32

    # The access line is written just after the answer is sent: wait for both lines.
    wait_until(
        lambda: all(i in hardened.server.log.read_text() for i in ("req-upload-42", generated))
    )
    text = hardened.server.log.read_text()
    assert token not in text
    assert token.rsplit("_", 1)[1] not in text  # the secret part alone
    assert "Bearer" not in text and "authorization" not in text.lower()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    for record in records:
        assert {"time", "level", "logger", "message", "request_id"} <= record.keys()
    upload = [r for r in records if r["request_id"] == "req-upload-42" and "route" in r]
    assert len(upload) == 1
    line = upload[0]
    assert (line["method"], line["route"], line["status"]) == ("POST", "/v1/images", 201)
    assert line["duration_ms"] > 0 and line["logger"] == "imgest.access"
    assert line["key_id"] == token.split("_")[1]
    denied_line = [r for r in records if r["request_id"] == generated]
    assert denied_line and denied_line[0]["route"] == "/v1/images/{image}"
    assert denied_line[0]["status"] == 401


def rss_bytes(server: Server) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def closed(sock: socket.socket, within: float = 2.0) -> bool:
    """Whether the server hangs up within `within` seconds (reading what is left)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_an_unauthenticated_100_mib_patch_is_refused_before_its_body(
    hardened: Hardened,
) -> None:
    before = rss_bytes(hardened.server)
    head = (
        f"PATCH /v1/images/{'ab' * 32} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {100 * MiB}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(head.encode() + b'{"label": "' + b"x" * 65536)
        response = read_response(sock)  # answered with 100 MiB still to come
        elapsed = time.monotonic() - started
        assert response.status == 401
        assert json.loads(response.read())["code"] == "auth_required"
        assert response.getheader("connection") == "close"
        assert closed(sock)  # the server hung up instead of reading the rest
    assert elapsed < 1.0
    assert rss_bytes(hardened.server) - before < 8 * MiB


def send_until_answered(
    sock: socket.socket, piece: bytes, most: int, wait: float, failure: str
) -> int:
    """Send `piece` (at most `most` times) until the server answers or closes; how many were
    sent. Each try waits `wait` s for an answer; all of it must end within 10 s (`failure`)."""
    sock.settimeout(wait)
    started = time.monotonic()
    sent = 0
    while sent < most:
        try:
            sock.sendall(piece)
            sent += 1
            if sock.recv(1, socket.MSG_PEEK):
                break
        except TimeoutError:
            continue  # the server stopped reading: its answer is on the way
        except OSError:
            break
        finally:
            assert time.monotonic() - started < 10, failure
    sock.settimeout(5)
    return sent


def test_a_chunked_100_mib_patch_with_a_key_stops_at_the_body_cap(hardened: Hardened) -> None:
    before = rss_bytes(hardened.server)
    head = (
        f"PATCH /v1/images/{'ab' * 32} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {hardened.tokens[6]}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (MiB, b"x" * MiB)
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=5) as sock:
        sock.sendall(head.encode())
        sent = MiB * send_until_answered(sock, chunk, 100, 0.2, "no 413 for a 100 MiB body")
        response = read_response(sock)
        assert response.status == 413
        assert json.loads(response.read())["code"] == "request_too_large"
    assert sent < 16 * MiB  # socket buffers' worth, not the 100 MiB
    assert rss_bytes(hardened.server) - before < 8 * MiB


def test_a_trickling_patch_gets_408_for_its_rate(hardened: Hardened) -> None:
    """The body clock is every route's, not only the upload's (issue 14)."""
    head = (
        f"PATCH /v1/images/{'ab' * 32} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {hardened.tokens[7]}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=5) as sock:
        sock.sendall(head.encode())
        started = time.monotonic()
        # One byte every 0.3 s never trips the 1 s idle timeout, only the 1 KiB/s minimum.
        send_until_answered(sock, b" ", 1000, 0.3, "no 408 for a 3 bytes/s PATCH")
        response = read_response(sock)
        assert response.status == 408
        assert json.loads(response.read())["code"] == "request_timeout"
        assert closed(sock)
    assert 1.0 <= time.monotonic() - started < 10


@pytest.mark.parametrize("pieces", [1, 40], ids=["one-read", "arriving"])
def test_a_request_head_over_the_cap_is_431(hardened: Hardened, pieces: int) -> None:
    padding = "".join(f"X-Pad-{i}: {'p' * 1000}\r\n" for i in range(120))  # ~120 KB
    head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{padding}\r\n".encode()
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=5) as sock:
        step = -(-len(head) // pieces)
        try:
            for offset in range(0, len(head), step):
                sock.sendall(head[offset : offset + step])
                time.sleep(0.02 if pieces > 1 else 0)
        except OSError:
            pass  # refused while still sending
        response = read_response(sock)
        assert response.status == 431
        assert response.getheader("content-type") == "application/problem+json"
        assert json.loads(response.read())["code"] == "request_head_too_large"
        assert response.getheader("connection") == "close"
        # The server closed the connection (a reset when unread bytes were left behind).
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1024) == b""
    fits = "".join(f"X-Pad-{i}: {'p' * 1000}\r\n" for i in range(14))  # ~14 KB
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=5) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{fits}\r\n".encode())
        assert read_response(sock).status == 200


def test_a_client_that_stops_reading_a_download_is_dropped(
    hardened: Hardened, read: Callable[[str], bytes]
) -> None:
    token = hardened.tokens[8]
    data = read("cat.jpg") + b"D" * (16 * MiB)  # bytes after the end marker are kept as sent
    r = httpx.post(
        f"{hardened.server.base}/v1/images",
        files=[("file", ("big.jpg", data, "image/jpeg"))],
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    image = r.json()["images"][0]["id"]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", hardened.port))
    with sock:
        sock.sendall(
            f"GET /v1/images/{image}/original HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        time.sleep(3.0)  # stop reading: the server's send buffer fills (send timeout 1 s)
        received = 0
        started = time.monotonic()
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        drained = time.monotonic() - started
    assert received < len(data) // 2  # dropped: the rest never came
    assert drained < 5.0
    assert httpx.get(f"{hardened.server.base}/healthz", timeout=2).status_code == 200
