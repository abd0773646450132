"""The corpus jobs' shared batch tail: stale write leases are logged, a storage outage stops."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from imgest.catalog.leases import Lease
from imgest.catalog.repo import Catalog
from imgest.errors import StorageUnavailable
from imgest.jobs.runleases import RunLeases, stop_if_down


def test_spent_logs_each_path_whose_lease_went_stale(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        leases = RunLeases(catalog, wait_s=1.0)
        lease = Lease("write", ("r/b", "r/a", "r/c"), holder=leases.holder, held=frozenset({"r/c"}))
        with caplog.at_level(logging.WARNING, logger="imgest.jobs.runleases"):
            leases.spent(lease, "rendition")
        assert [r.getMessage() for r in caplog.records] == [
            f"rendition {path}: its lease went stale before its row; not recorded"
            for path in ("r/a", "r/b")
        ]
    finally:
        catalog.close()


def test_stop_if_down_stops_the_run_only_when_storage_was_down() -> None:
    stop_if_down(None)
    with pytest.raises(StorageUnavailable, match=r"unavailable \(timed out\); the batches done"):
        stop_if_down("timed out")
