"""A short run of bench/load.py against a real `imgest serve`: no errors under concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.load import run_load, small_payloads
from tests.services.imgest_server import Server


def test_short_load_run_has_no_errors(tmp_path: Path) -> None:
    """15 s at concurrency 8 with small photos: every upload answered 201 (speed not asserted)."""
    server = Server(tmp_path)
    server.start()
    try:
        result = asyncio.run(
            run_load(server.base, small_payloads("ci"), concurrency=8, duration=15.0)
        )
    finally:
        server.stop()
    print(f"short load run: {result.summary()}")
    assert result.errors == []
    assert result.ok == result.sent > 0
    assert set(result.statuses) == {201}
