"""A local Ray (head node on 127.0.0.1, 2 CPUs, no dashboard, no usage stats) for the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "ORT_DISABLE_TELEMETRY": "1",
}


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """The `ray` module, initialised on a real local Ray; shut down after the session.

    A missing `ray[data]` fails the test with a message (install the dev extra); never skips.
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:  # pragma: no cover - the dev extra installs ray[data]
        pytest.fail(f"Ray is not installed ({exc}); pip install -e '.[dev]' brings ray[data]")
    os.environ.update(RAY_ENV)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    try:
        yield ray
    finally:
        ray.shutdown()
