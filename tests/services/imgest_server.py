"""`imgest serve` as a child process on loopback, with its own var/ and an empty TMPDIR."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_tcp(port: int, timeout: float = 60.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts connections on host:port, or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"nothing listening on {host}:{port} after {timeout:.0f} s")
            time.sleep(0.1)


class Server:
    """One `imgest serve` process; `env` adds or overrides IMGEST_* settings."""

    def __init__(
        self, root: Path, env: dict[str, str] | None = None, log_level: str = "warning"
    ) -> None:
        self.root = root
        self.tmpdir = root / "tmp"
        self.tmpdir.mkdir(exist_ok=True)
        self.var = root / "var"
        self.log = root / "server.log"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until /readyz answers 200."""
        env = {
            **os.environ,
            "TMPDIR": str(self.tmpdir),
            "IMGEST_STORAGE_URL": str(self.var / "blobs"),
            "IMGEST_CATALOG_URL": f"sqlite:///{self.var / 'catalog.db'}",
            "IMGEST_PORT": str(self.port),
            **self.extra_env,
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "imgest.cli", "serve", "--log-level", self.log_level],
                env=env,
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"server did not become ready:\n{self.log.read_text()}")
            time.sleep(0.2)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def upload_until_killed(
    server: Server,
    make_image: Callable[[int, int], bytes],
    *,
    acked_before_kill: int,
    workers: int = 4,
    timeout: float = 60.0,
) -> dict[str, bytes]:
    """Upload `make_image(worker, n)` from several threads; SIGKILL the server once
    `acked_before_kill` uploads were answered 2xx. Returns {image id: bytes} of every 2xx."""
    acked: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def uploader(worker: int) -> None:
        with httpx.Client(timeout=60) as http:
            n = 0
            while not stop.is_set():
                data = make_image(worker, n)
                try:
                    r = http.post(
                        f"{server.base}/v1/images",
                        files=[("file", (f"{worker}-{n}.jpg", data, "image/jpeg"))],
                    )
                except httpx.TransportError:
                    return  # the server is gone
                n += 1
                if r.status_code in (200, 201):
                    with lock:
                        acked[r.json()["images"][0]["id"]] = data

    threads = [threading.Thread(target=uploader, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    while len(acked) < acked_before_kill and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= acked_before_kill, f"only {len(acked)} uploads answered before the kill"
    return acked
