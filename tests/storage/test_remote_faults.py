"""Azure and S3 stores facing a hung or absent server: bounded time, StoreUnavailableError."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from imgest.storage.azure import AzureStore
from imgest.storage.base import BlobStore, StoreUnavailableError
from imgest.storage.s3 import S3Store
from tests.services.blackhole import blackhole
from tests.services.imgest_server import free_port

from .contract import payload

pytestmark = pytest.mark.anyio

# A fake account key (base64); the server never gets far enough to check it.
KEY = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"


def azure(port: int) -> BlobStore:
    return AzureStore.from_url(
        f"azure://photos?account=acct&key={KEY}&endpoint=http://127.0.0.1:{port}/acct"
        "&timeout=1&retries=1"
    )


def s3(port: int) -> BlobStore:
    return S3Store.from_url(
        f"s3://bucket?endpoint=http://127.0.0.1:{port}&region=us-east-1"
        "&key_id=k&secret=s&timeout=1&retries=1"
    )


async def assert_unavailable_quickly(store: BlobStore, bound: float) -> None:
    try:
        for attempt in (
            lambda: store.put("originals/x", payload(3 * 1024 * 1024), mode="create"),
            lambda: store.head("originals/x"),
            lambda: store.get("originals/x"),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError):
                await attempt()
            assert time.monotonic() - started < bound
    finally:
        await store.close()


@pytest.mark.parametrize("make", [azure, s3], ids=["azure", "s3"])
async def test_a_hung_server_fails_within_the_timeouts(make: Callable[[int], BlobStore]) -> None:
    # timeout=1, retries=1: two tries of about a second each, plus backoff.
    with blackhole() as port:
        await assert_unavailable_quickly(make(port), bound=8.0)


@pytest.mark.parametrize("make", [azure, s3], ids=["azure", "s3"])
async def test_nothing_listening_fails_fast(make: Callable[[int], BlobStore]) -> None:
    await assert_unavailable_quickly(make(free_port()), bound=5.0)
