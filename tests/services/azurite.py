"""Azurite (the Azure Storage emulator, blob service only) on 127.0.0.1, for the Azure tests.

Installed by `scripts/install/20-azurite.sh` into `.cache/azurite`. The session fixture `azurite`
starts one server on a free port with its data under a temporary folder and stops it at the end;
`stop()` and `start()` let a fault test take it away and bring it back (same port, same data).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.services.imgest_server import free_port, wait_for_tcp

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"

# Azurite's single built-in account; the key is public (Azure's documentation prints it).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Azurite:
    """One Azurite blob server: its endpoint, credentials, and start/stop for fault tests."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "azurite.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def blob_endpoint(self) -> str:
        """`http://127.0.0.1:<port>/devstoreaccount1` (path-style, as Azurite serves it)."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """An Azure Storage connection string for this server."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def url_for(self, container: str, prefix: str = "") -> str:
        """An imgest storage URL (`azure://...`) for `container` on this server, key included."""
        path = f"{container}/{prefix}" if prefix else container
        return (
            f"azure://{path}?account={ACCOUNT}&key={quote(KEY, safe='')}"
            f"&endpoint={quote(self.blob_endpoint, safe='')}"
        )

    @staticmethod
    def new_container() -> str:
        """A fresh, valid container name (3-63 lower-case letters, digits and dashes)."""
        return f"t-{uuid.uuid4().hex}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the server (again) on the same port and data folder; wait until it listens."""
        if self.proc is not None:
            return
        if not BINARY.exists():
            pytest.fail(f"Azurite is not installed at {BINARY}: run `make test-deps`")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(BINARY),
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(self.port),
                    "--location",
                    str(self.data),
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                    "--loose",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={k: v for k, v in os.environ.items() if k != "AZURITE_ACCOUNTS"},
            )
        try:
            wait_for_tcp(self.port, timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (SIGKILL: as sudden as an outage); the data folder stays."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A running Azurite blob server for the whole session (stopped and removed at the end)."""
    workdir = Path(tempfile.mkdtemp(prefix="imgest-azurite-"))
    server = Azurite(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
