"""Baseline servers as child processes on loopback: the naive reference app and thumbor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
THUMBOR_VENV = HERE / ".venv-thumbor"

THUMBOR_CONF = """\
# thumbor's fastest configuration for this comparison: originals from a folder, nothing cached.
LOADER = "thumbor.loaders.file_loader"
FILE_LOADER_ROOT_PATH = {root!r}
STORAGE = "thumbor.storages.no_storage"
RESULT_STORAGE = None
ENGINE_THREADPOOL_SIZE = 2
QUALITY = 90
ALLOW_UNSAFE_URL = True
MAX_AGE = 0
"""


class Child:
    """One server process; `ready` is a GET path that answers 200 once it serves."""

    def __init__(self, name: str, argv: list[str], port: int, ready: str, log: Path) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.ready = ready
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Start and wait for the ready path; raise with the log's tail if it never comes."""
        env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(self.base + self.ready, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.name} did not start:\n{tail}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def naive_app(root: Path, port: int) -> Child:
    """bench/naive_app.py serving from `root`."""
    root.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(HERE / "naive_app.py"), "--port", str(port), "--root", str(root)]
    return Child("naive app", argv, port, "/docs", root / "server.log")


def thumbor(originals: Path, work: Path, port: int, ready_image: str) -> Child:
    """thumbor from bench/.venv-thumbor serving `originals` with the file loader."""
    binary = THUMBOR_VENV / "bin" / "thumbor"
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: `make bench` creates it (pip install thumbor)")
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "thumbor.conf"
    conf.write_text(THUMBOR_CONF.format(root=str(originals)))
    argv = [str(binary), "-c", str(conf), "-i", "127.0.0.1", "-p", str(port), "-l", "warning"]
    return Child("thumbor", argv, port, f"/unsafe/224x224/{ready_image}", work / "server.log")


def thumbor_version() -> str:
    """thumbor's version from its venv, or why there is none."""
    binary = THUMBOR_VENV / "bin" / "thumbor"
    if not binary.exists():
        return "not installed"
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()
