"""S3Store against Ceph radosgw: the BlobStore contract, multipart, addressing, presigned URLs."""

from __future__ import annotations

import socket
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import boto3
import httpx
import pytest

from imgest.storage.base import BlobExistsError, signed_url
from imgest.storage.registry import open_store
from imgest.storage.s3 import S3Store
from tests.services.radosgw import ACCESS_KEY, SECRET_KEY, Radosgw

from .contract import BlobStoreContract, listed, payload, read

pytestmark = pytest.mark.s3

# The smallest parts S3 allows, so the contract's 5 MiB blob goes through a multipart upload.
SMALL_PARTS = "&multipart_bytes=1048576&part_bytes=5242880"


@pytest.fixture(scope="module")
def bucket(radosgw: Radosgw) -> str:
    """One bucket per module; each test writes under its own prefix."""
    name = radosgw.new_bucket()
    boto3.client(
        "s3", endpoint_url=radosgw.endpoint, region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
    ).create_bucket(Bucket=name)  # fmt: skip
    return name


def fresh_url(radosgw: Radosgw, bucket: str, extra: str = "") -> str:
    return radosgw.url_for(bucket, f"t-{uuid.uuid4().hex}") + extra


class TestS3StoreContract(BlobStoreContract):
    @pytest.fixture
    async def store(self, radosgw: Radosgw, bucket: str) -> AsyncIterator[S3Store]:
        store = S3Store.from_url(fresh_url(radosgw, bucket, SMALL_PARTS + "&addressing=path"))
        yield store
        await store.close()


@pytest.fixture
async def store(radosgw: Radosgw, bucket: str) -> AsyncIterator[S3Store]:
    store = S3Store.from_url(fresh_url(radosgw, bucket, SMALL_PARTS))
    yield store
    await store.close()


@pytest.mark.anyio
async def test_a_large_blob_goes_up_in_parts_and_create_still_refuses(store: S3Store) -> None:
    big = payload(11 * 1024 * 1024 + 17, seed=9)
    meta = await store.put("big", big, mode="create")
    assert meta.etag is not None and meta.etag.endswith("-3")  # S3's multipart etag: 3 parts
    with pytest.raises(BlobExistsError):
        await store.put("big", payload(6 * 1024 * 1024, seed=1), mode="create")
    with pytest.raises(BlobExistsError):
        await store.put("big", b"small", mode="create")
    assert await read(store, "big") == big
    await store.put("big", b"now small")  # overwrite works over a multipart blob
    assert await read(store, "big") == b"now small"


@pytest.mark.anyio
async def test_a_missing_bucket_is_created(radosgw: Radosgw) -> None:
    store = S3Store.from_url(radosgw.url_for(radosgw.new_bucket()))
    try:
        assert await listed(store) == []
        await store.put("a", b"x", mode="create")
        assert await read(store, "a") == b"x"
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_bucket_removed_under_a_running_store_is_made_again(radosgw: Radosgw) -> None:
    # As AzureStore does for its container (RemoteStore.put): one new bucket, then the write.
    name = radosgw.new_bucket()
    store = S3Store.from_url(radosgw.url_for(name))
    try:
        await store.put("before", b"1")
        admin = boto3.client(
            "s3", endpoint_url=radosgw.endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        )  # fmt: skip
        admin.delete_object(Bucket=name, Key="before")
        admin.delete_bucket(Bucket=name)
        await store.put("after", b"2", mode="create")
        assert await read(store, "after") == b"2"
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_presigned_url_reads_the_exact_bytes_and_expires(store: S3Store) -> None:
    data = payload(70_000, seed=4)
    await store.put("originals/ab/cd/blob", data)
    url = await signed_url(store, "originals/ab/cd/blob", timedelta(minutes=5),
                           content_type="image/webp")  # fmt: skip
    short = await signed_url(store, "originals/ab/cd/blob", timedelta(seconds=1))
    assert url is not None and short is not None and "X-Amz-Signature=" in url
    async with httpx.AsyncClient() as client:
        answer = await client.get(url)
        assert answer.status_code == 200
        assert answer.content == data
        assert answer.headers["content-type"] == "image/webp"
        assert (await client.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))).is_error
        time.sleep(2.1)
        assert (await client.get(short)).status_code == 403


@pytest.mark.anyio
async def test_virtual_hosted_addressing(
    radosgw: Radosgw, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # <bucket>.localhost is loopback (RFC 6761); glibc here does not say so, this does.
    real = socket.getaddrinfo

    def loopback_subdomains(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_subdomains)
    endpoint = f"http://localhost:{radosgw.rgw_port}"
    url = (
        f"s3://{bucket}/virtual?endpoint={endpoint}&region=us-east-1&addressing=virtual"
        f"&key_id={ACCESS_KEY}&secret={SECRET_KEY}"
    )
    store = S3Store.from_url(url)
    try:
        await store.put("v/blob", b"virtual")
        assert await read(store, "v/blob") == b"virtual"
        presigned = await signed_url(store, "v/blob", timedelta(minutes=1))
        assert presigned is not None
        assert presigned.startswith(f"http://{bucket}.localhost:{radosgw.rgw_port}/virtual/v/blob")
        assert httpx.get(presigned).content == b"virtual"  # sync: resolves through the patch
    finally:
        await store.close()


def test_open_store_and_the_url_never_shows_the_secret(radosgw: Radosgw) -> None:
    store = open_store(radosgw.url_for("bkt-1", "p/q"))
    assert isinstance(store, S3Store)
    assert SECRET_KEY not in store.url and SECRET_KEY not in repr(store)
    assert store.url == f"s3://bkt-1/p/q?endpoint={radosgw.endpoint}&region=us-east-1"


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://bkt?nonsense=1",
        "s3://bkt?addressing=sideways",
        "s3://key:secret@bkt",
        "s3://bkt/a//c",
        "s3://b",
        "s3://Bucket",
        "s3://bucket-",
    ],
)
def test_bad_urls_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError) as got:
        S3Store.from_url(url)
    assert "secret" not in str(got.value)


@pytest.mark.anyio
async def test_a_multipart_upload_holds_no_second_copy(radosgw: Radosgw, bucket: str) -> None:
    store = S3Store.from_url(fresh_url(radosgw, bucket))  # default sizes: 8 MiB parts
    data = payload(24 * 1024 * 1024 + 1, seed=12)
    try:
        await store.put("warm", b"x")
        tracemalloc.start()
        try:
            meta = await store.put("originals/big", data, mode="create")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert meta.etag is not None and meta.etag.endswith("-4")
        # Parts are read from the caller's buffer piece by piece: a copy of the blob, or of
        # the four parts in flight, would be 24 MiB.
        assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for 24 MiB"
        assert await read(store, "originals/big") == data
    finally:
        await store.close()
