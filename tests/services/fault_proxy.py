"""A loopback HTTP/1.1 proxy (asyncio + h11) that injects faults in front of a real server.

Faults, each chosen per request from a seeded RNG (or from a script, in order):
- `503`: answer 503 problem+json with `Retry-After` and close; the server never sees the request;
- `drop_request`: close the connection before forwarding anything;
- `drop_response`: forward, let the server finish, then close without answering (a lost answer);
- `cut_response`: forward, then send half of the answer and close (a truncated answer);
- `abandon`: forward the request and hang up on both sides at once (the server may or may not
  finish the work, while the client is already retrying).
The RNG is keyed by (seed, method, target, body length, occurrence), so the faults a request
meets do not depend on how concurrent requests interleave.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

import h11

FAULTS = ("503", "drop_request", "drop_response", "cut_response", "abandon")
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding"}


@dataclass(frozen=True)
class Faults:
    """Probability of each fault per request (the rest pass through)."""

    unavailable: float = 0.0
    drop_request: float = 0.0
    drop_response: float = 0.0
    cut_response: float = 0.0
    abandon: float = 0.0
    retry_after: str = "0"

    def pick(self, roll: float) -> str:
        """The fault for a uniform `roll` in [0, 1)."""
        for name, p in zip(
            FAULTS,
            (
                self.unavailable,
                self.drop_request,
                self.drop_response,
                self.cut_response,
                self.abandon,
            ),
            strict=True,
        ):
            if roll < p:
                return name
            roll -= p
        return "pass"


@dataclass
class Seen:
    """One request as the proxy received it, and what it did with it."""

    method: str
    target: str
    body_bytes: int
    fault: str


@dataclass
class _Message:
    head: h11.Request | h11.Response
    body: bytes


@dataclass
class FaultProxy:
    """Listens on 127.0.0.1:<port>; forwards to 127.0.0.1:<upstream_port>."""

    upstream_port: int
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    script: list[str] | None = None  # faults in request order (then "pass"), instead of the RNG
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._occurrences: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> Counter[str]:
        """How often each fault (and `pass`) was applied."""
        with self._lock:
            return Counter(s.fault for s in self.seen)

    def start(self) -> None:
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    def _decide(self, request: h11.Request, body: bytes) -> str:
        method, target = request.method.decode(), request.target.decode()
        with self._lock:
            if self.script is not None:
                fault = self.script.pop(0) if self.script else "pass"
            else:
                identity = f"{method} {target} {len(body)}"
                n = self._occurrences[identity]
                self._occurrences[identity] += 1
                roll = random.Random(f"{self.seed}:{identity}:{n}").random()
                fault = self.faults.pick(roll)
            self.seen.append(Seen(method, target, len(body), fault))
        return fault

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                message = await _read(conn, reader)
                if message is None:
                    return
                assert isinstance(message.head, h11.Request)
                fault = self._decide(message.head, message.body)
                if fault == "503":
                    writer.write(_unavailable(conn, self.faults.retry_after))
                    await writer.drain()
                    return
                if fault == "drop_request":
                    return
                answer = await self._forward(message, wait=fault != "abandon")
                if answer is None or fault in ("abandon", "drop_response"):
                    return
                raw = _serialize(conn, answer)
                if fault == "cut_response":
                    writer.write(raw[: max(1, len(raw) // 2)])
                    await writer.drain()
                    return
                writer.write(raw)
                await writer.drain()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _forward(self, message: _Message, *, wait: bool) -> _Message | None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            conn = h11.Connection(h11.CLIENT)
            request = message.head
            assert isinstance(request, h11.Request)
            headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
            headers.append((b"connection", b"close"))
            out = conn.send(
                h11.Request(method=request.method, target=request.target, headers=headers)
            )
            out = (out or b"") + (conn.send(h11.Data(data=message.body)) if message.body else b"")
            out += conn.send(h11.EndOfMessage()) or b""
            writer.write(out)
            await writer.drain()
            if not wait:
                return None
            return await _read(conn, reader)
        finally:
            writer.close()


async def _read(conn: h11.Connection, reader: asyncio.StreamReader) -> _Message | None:
    """One whole request or response from `reader`, or None when the peer closed first."""
    head: h11.Request | h11.Response | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Request | h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return _Message(head, bytes(body))
        elif isinstance(event, h11.ConnectionClosed):
            return None


def _serialize(conn: h11.Connection, answer: _Message) -> bytes:
    response = answer.head
    assert isinstance(response, h11.Response)
    headers = [(k, v) for k, v in response.headers if k.lower() not in _HOP_BY_HOP]
    if not any(k.lower() == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(answer.body)).encode()))
    out = conn.send(h11.Response(status_code=response.status_code, headers=headers)) or b""
    if answer.body:
        out += conn.send(h11.Data(data=answer.body)) or b""
    return out + (conn.send(h11.EndOfMessage()) or b"")


def _unavailable(conn: h11.Connection, retry_after: str) -> bytes:
    body = json.dumps(
        {
            "type": "https://imgest.dev/problems/service_unavailable",
            "title": "Service unavailable",
            "status": 503,
            "code": "service_unavailable",
            "detail": "Injected by the fault proxy.",
        }
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", retry_after.encode()),
        (b"connection", b"close"),
    ]
    out = conn.send(h11.Response(status_code=503, headers=headers)) or b""
    return out + (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
