"""AzureStore against Azurite: the BlobStore contract, staged blocks, private containers, SAS."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest
from azure.identity.aio import DefaultAzureCredential
from azure.storage.blob.aio import BlobServiceClient

from imgest.storage.azure import AzureStore, QuickRetry
from imgest.storage.base import BlobExistsError, signed_url
from imgest.storage.registry import open_store
from tests.services.azurite import ACCOUNT, KEY, Azurite

from .contract import BlobStoreContract, payload, read

pytestmark = pytest.mark.azure

SMALL_BLOCKS = "&single_put_bytes=262144&block_bytes=262144"


class TestAzureStoreContract(BlobStoreContract):
    @pytest.fixture
    async def store(self, azurite: Azurite) -> AsyncIterator[AzureStore]:
        # Small blocks, so the contract's multi-MiB blob goes through staged blocks.
        store = AzureStore.from_url(azurite.url_for(azurite.new_container()) + SMALL_BLOCKS)
        yield store
        await store.close()


class TestAzureStoreUnderAPrefixContract(BlobStoreContract):
    @pytest.fixture
    async def store(self, azurite: Azurite) -> AsyncIterator[AzureStore]:
        store = AzureStore.from_url(azurite.url_for(azurite.new_container(), "some/prefix"))
        yield store
        await store.close()


@pytest.fixture
async def store(azurite: Azurite) -> AsyncIterator[AzureStore]:
    store = AzureStore.from_url(azurite.url_for(azurite.new_container()) + SMALL_BLOCKS)
    yield store
    await store.close()


@pytest.mark.anyio
async def test_create_mode_refuses_over_a_staged_block_upload(store: AzureStore) -> None:
    big = payload(3 * 1024 * 1024 + 5, seed=7)
    await store.put("big", big, mode="create")
    with pytest.raises(BlobExistsError):
        await store.put("big", payload(3 * 1024 * 1024, seed=8), mode="create")
    with pytest.raises(BlobExistsError):
        await store.put("big", b"small", mode="create")
    assert await read(store, "big") == big


@pytest.mark.anyio
async def test_the_container_is_created_private(azurite: Azurite) -> None:
    container = azurite.new_container()
    store = AzureStore.from_url(azurite.url_for(container))
    try:
        await store.put("x", b"x")
    finally:
        await store.close()
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        policy = await service.get_container_client(container).get_container_access_policy()
    assert policy["public_access"] is None
    async with httpx.AsyncClient() as client:  # anonymous reads are refused
        answer = await client.get(f"{azurite.blob_endpoint}/{container}/x")
    assert answer.status_code in (403, 404)


@pytest.mark.anyio
async def test_a_sas_url_reads_the_exact_bytes_and_expires(store: AzureStore) -> None:
    data = payload(100_000, seed=3)
    await store.put("originals/ab/cd/blob", data)
    url = await signed_url(store, "originals/ab/cd/blob", timedelta(minutes=5),
                           content_type="image/png")  # fmt: skip
    assert url is not None and "sig=" in url
    async with httpx.AsyncClient() as client:
        answer = await client.get(url)
        assert answer.status_code == 200
        assert answer.content == data
        assert answer.headers["content-type"] == "image/png"
        expired = await signed_url(store, "originals/ab/cd/blob", timedelta(seconds=-120))
        assert expired is not None
        assert (await client.get(expired)).status_code == 403


@pytest.mark.anyio
async def test_connection_string_url(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    container = azurite.new_container()
    store = open_store(f"azure://{container}/pre")
    assert isinstance(store, AzureStore)
    try:
        await store.put("a/b", b"hello")
        assert await read(store, "a/b") == b"hello"
    finally:
        await store.close()
    assert store.url == f"azure://{container}/pre?account=devstoreaccount1"


def test_the_url_never_shows_the_key(azurite: Azurite) -> None:
    store = open_store(azurite.url_for("photos"))
    assert "key" not in store.url and "Eby8" not in store.url
    assert "Eby8" not in repr(store)


@pytest.mark.parametrize(
    "url",
    [
        "azure://",
        "azure://photos?account=a&nonsense=1",
        "azure://user:pw@c?account=a",
        "azure://photos/../x?account=a",
        "azure://photos?account=a&account=b",
        "azure://Photos?account=a",
        "azure://ab?account=a",
        "azure://a--b?account=a",
        "azure://-ab?account=a",
    ],
)
def test_bad_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError) as got:
        AzureStore.from_url(url)
    assert "pw" not in str(got.value)


def test_no_credentials_at_all_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with pytest.raises(ValueError, match="account"):
        AzureStore.from_url("azure://photos")


@pytest.mark.anyio
async def test_a_container_removed_under_a_running_store_is_made_again(
    azurite: Azurite, store: AzureStore
) -> None:
    await store.put("before", b"1")
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        await service.delete_container(store.url.split("?")[0].removeprefix("azure://"))
    await store.put("after", b"2", mode="create")
    assert await read(store, "after") == b"2"


@pytest.mark.anyio
async def test_account_key_from_the_environment(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_KEY", KEY)
    endpoint = quote(azurite.blob_endpoint, safe="")
    store = open_store(f"azure://{azurite.new_container()}?account={ACCOUNT}&endpoint={endpoint}")
    assert isinstance(store, AzureStore)
    try:
        await store.put("k", b"env key")
        assert await read(store, "k") == b"env key"
        assert await signed_url(store, "k", timedelta(minutes=1)) is not None
    finally:
        await store.close()


@pytest.mark.anyio
async def test_an_account_without_a_key_uses_azure_ad(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_KEY", raising=False)
    store = AzureStore.from_url("azure://photos?account=myacct")
    try:
        assert isinstance(store._credential, DefaultAzureCredential)
        assert store.url == "azure://photos?account=myacct"
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_large_blob_is_committed_as_blocks_without_a_second_copy(
    azurite: Azurite,
) -> None:
    container = azurite.new_container()
    store = AzureStore.from_url(azurite.url_for(container))  # default sizes: 1 MiB blocks
    data = payload(16 * 1024 * 1024 + 1, seed=11)
    try:
        await store.put("warm", b"x")  # container made, connections open
        tracemalloc.start()
        try:
            await store.put("originals/big", data, mode="create")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Four 1 MiB block copies in flight at most (about 5 MiB seen): a second copy of the
        # blob would be 16 MiB.
        assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for 16 MiB"
        assert await read(store, "originals/big") == data
    finally:
        await store.close()
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blob = service.get_blob_client(container, "originals/big")
        committed, uncommitted = await blob.get_block_list("committed")
    assert len(committed) == 17 and not uncommitted
    assert {block.size for block in committed[:-1]} == {1024 * 1024}


def test_retries_back_off_quickly_and_capped() -> None:
    policy = QuickRetry(retry_total=3)
    waits = [policy.get_backoff_time({"count": n}) for n in range(1, 8)]
    assert 0.18 < waits[0] <= 0.25 and 0.37 < waits[1] <= 0.5 and 0.75 <= waits[2] <= 1.0
    assert all(w <= 4.0 for w in waits)
