"""AzureStore: blobs in one Azure Blob Storage container (the official azure-storage-blob SDK).

URL: `azure://<container>[/<key prefix>]?<parameters>`; credentials, in the order tried:

- `connection_string=<percent-encoded>`, or the environment's AZURE_STORAGE_CONNECTION_STRING
  when the URL names no `account`;
- `account=<name>` with `key=<account key>` (or AZURE_STORAGE_KEY): shared-key auth;
- `account=<name>` alone: `DefaultAzureCredential` (managed identity, workload identity,
  AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, Azure CLI login, ...).

`endpoint=<blob endpoint>` replaces `https://<account>.blob.core.windows.net` (Azurite,
sovereign clouds); `timeout=<s>` and `retries=<n>` override the settings. `store.url` and
error messages never carry a key or a connection string.

Writes: a blob up to `single_put_bytes` (1 MiB) is one Put Blob; a larger one is staged as
blocks of `block_bytes` (1 MiB) cut from the caller's buffer, four in flight at a time (so at
most four blocks are copied at once, never the whole blob), then committed with Put Block List.
1 MiB is the largest body aiohttp takes as bytes without a warning.
mode="create" sends `If-None-Match: *` on the Put Blob or on the commit, so the service
refuses atomically. Block ids are random per upload: two writers of one name never commit
each other's blocks.

The container is created private (no public access) on the first write if it is missing.
Reads can be handed out as read-only SAS URLs (`signed_url`): signed with the account key, or
with a user delegation key when the store authenticates with Azure AD.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.identity.aio import DefaultAzureCredential
from azure.storage.blob import (
    BlobBlock,
    BlobProperties,
    BlobSasPermissions,
    UserDelegationKey,
    generate_blob_sas,
)
from azure.storage.blob.aio import (
    BlobClient,
    BlobServiceClient,
    ContainerClient,
    ExponentialRetry,
)

from imgest.storage.base import BlobMeta, PutMode, StoreOptions
from imgest.storage.remote import (
    ChunkedReader,
    Fault,
    RemoteStore,
    bare_etag,
    parse_remote_url,
    run_bounded,
    utc,
)

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# Azure's container naming rules: 3-63 of a-z, 0-9 and single dashes, no dash at either end.
_CONTAINER = re.compile(r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*")


class QuickRetry(ExponentialRetry):
    """The SDK's retry rules (what and when) with short, capped, jittered backoff.

    The SDK's default first wait is 15 s; an upload request should fail over in seconds.
    Waits: about 0.25, 0.5, 1, 2, ... s, at most 4 s each.
    """

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        """Seconds before the next try."""
        retry = max(int(settings.get("count", 1)), 1)  # the SDK counts the retry before waiting
        return float(min(4.0, 0.25 * 2 ** (retry - 1)) * random.uniform(0.75, 1.0))


def _meta(path: str, props: BlobProperties) -> BlobMeta:
    return BlobMeta(path, int(props.size), utc(props.last_modified), bare_etag(props.etag))


def _block_id() -> Callable[[int], str]:
    """Block ids for one upload: a random tag and the index, base64, all of one length."""
    tag = secrets.token_hex(12)
    return lambda i: base64.b64encode(f"{tag}-{i:06d}".encode()).decode()


class AzureStore(RemoteStore):
    """A BlobStore on one Azure Blob Storage container (optionally under a key prefix)."""

    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        *,
        prefix: str = "",
        url: str,
        account_key: str | None = None,
        credential: DefaultAzureCredential | None = None,
        single_put_bytes: int = MiB,
        block_bytes: int = MiB,
        parallel_blocks: int = 4,
    ) -> None:
        """Use `service` (already configured with credentials, timeouts and retries)."""
        if not 0 < block_bytes <= MiB or not 0 <= single_put_bytes <= MiB or parallel_blocks < 1:
            # aiohttp warns when handed a bytes body over 1 MiB
            raise ValueError("want 0 < block_bytes <= 1 MiB, 0 <= single_put_bytes <= 1 MiB")
        super().__init__(url=url, prefix=prefix)
        self.single_put_bytes = single_put_bytes
        self.block_bytes = block_bytes
        self.parallel_blocks = parallel_blocks
        self._service = service
        self._container: ContainerClient = service.get_container_client(container)
        self._account_key = account_key
        self._credential = credential
        self._delegation: UserDelegationKey | None = None
        self._delegation_until = datetime.min.replace(tzinfo=UTC)

    @classmethod
    def from_url(cls, url: str, *, options: StoreOptions | None = None) -> Self:
        """A store for `azure://<container>[/<prefix>]?...` (see the module docstring)."""
        parts = parse_remote_url(url, "azure", _CONTAINER)
        opts = parts.options(options or StoreOptions())
        conn = parts.pop("connection_string")
        account = parts.pop("account")
        key = parts.pop("key")
        endpoint = parts.pop("endpoint")
        single = int(parts.pop("single_put_bytes") or MiB)
        block = int(parts.pop("block_bytes") or MiB)
        parts.refuse_leftovers()
        client_kwargs: dict[str, Any] = {
            "retry_policy": QuickRetry(retry_total=opts.retries, retry_to_secondary=False),
            "connection_timeout": min(opts.timeout_s, 10.0),
            "read_timeout": opts.timeout_s,
            # Reads come back in bounded pieces, not one 32 MiB first chunk.
            "max_single_get_size": 4 * MiB,
            "max_chunk_get_size": 4 * MiB,
        }
        credential: DefaultAzureCredential | None = None
        if conn is None and account is None:
            conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if conn is not None:
            service = BlobServiceClient.from_connection_string(conn, **client_kwargs)
            account = service.account_name
            key = _key_of(conn)
        elif account is not None:
            key = key or os.environ.get("AZURE_STORAGE_KEY")
            endpoint = endpoint or f"https://{account}.blob.core.windows.net"
            if key:
                cred: Any = {"account_name": account, "account_key": key}
            else:
                credential = cred = DefaultAzureCredential()
            service = BlobServiceClient(endpoint, credential=cred, **client_kwargs)
        else:
            raise ValueError(
                "azure:// URL needs account=<name> (with key= or DefaultAzureCredential) or "
                "connection_string= (or AZURE_STORAGE_CONNECTION_STRING in the environment)"
            )
        return cls(
            service,
            parts.container,
            prefix=parts.prefix,
            url=parts.public(f"account={account}"),
            account_key=key or None,
            credential=credential,
            single_put_bytes=single,
            block_bytes=block,
        )

    async def _create_container(self) -> None:
        try:
            await self._container.create_container()  # no public_access: private
            log.info("created private container %s", self._container.container_name)
        except ResourceExistsError:
            pass
        except ResourceNotFoundError as exc:
            raise self._unavailable("create container", exc) from exc
        except AzureError as exc:
            if getattr(exc, "status_code", None) != 403:
                raise self._unavailable("create container", exc) from exc
            # Data-plane-only rights: the container must have been made by an operator.
            log.info("no right to create container %s; assuming it exists", self.url)

    def _fault(self, exc: Exception) -> Fault | None:
        if isinstance(exc, ResourceNotFoundError):
            missing = getattr(exc, "error_code", None) == "ContainerNotFound"
            return "no_container" if missing else "no_blob"
        if isinstance(exc, ResourceExistsError | ResourceModifiedError):
            return "exists"
        return "failed" if isinstance(exc, AzureError) else None

    # --- the calls (RemoteStore maps their errors) -------------------------------------

    async def _put(self, path: str, key: str, data: bytes, mode: PutMode) -> BlobMeta:
        """One Put Blob, or staged blocks when large; see the module docstring."""
        blob = self._container.get_blob_client(key)
        if len(data) <= self.single_put_bytes:
            # overwrite=False is the SDK's If-None-Match: * on Put Blob.
            done = await blob.upload_blob(data, length=len(data), overwrite=mode == "overwrite")
        else:
            blocks = await self._stage_blocks(blob, data)
            condition: dict[str, Any] = {}
            if mode == "create":
                condition = {"match_condition": MatchConditions.IfMissing}  # If-None-Match: *
            done = await blob.commit_block_list(blocks, **condition)
        modified = done["last_modified"]
        assert isinstance(modified, datetime)
        return BlobMeta(path, len(data), utc(modified), bare_etag(str(done["etag"])))

    async def _stage_blocks(self, blob: BlobClient, data: bytes) -> list[BlobBlock]:
        """Put Block for each `block_bytes` slice, a few at a time; the ids in order."""
        block_id = _block_id()
        view = memoryview(data)
        starts = range(0, len(view), self.block_bytes)

        def stage(i: int, start: int) -> Callable[[], Awaitable[None]]:
            async def job() -> None:  # runs holding a slot: few slices are copied at once
                chunk = bytes(view[start : start + self.block_bytes])
                await blob.stage_block(block_id(i), chunk, length=len(chunk))

            return job

        await run_bounded([stage(i, start) for i, start in enumerate(starts)], self.parallel_blocks)
        return [BlobBlock(block_id(i)) for i in range(len(starts))]

    async def _get(self, path: str, key: str) -> ChunkedReader:
        """A download; its bytes arrive in pieces of at most 4 MiB, re-chunked."""
        download = await self._container.get_blob_client(key).download_blob()
        meta = _meta(path, download.properties)

        async def pieces() -> AsyncIterator[bytes]:
            try:
                async for piece in download.chunks():
                    if piece:
                        yield piece
            except AzureError as exc:
                raise self._unavailable(f"read {path!r}", exc) from exc

        async def release() -> None:
            pass  # the SDK reads each piece with its own request: nothing stays open

        return ChunkedReader(meta, pieces(), release)

    async def _head(self, path: str, key: str) -> BlobMeta:
        return _meta(path, await self._container.get_blob_client(key).get_blob_properties())

    async def _list(self, key_prefix: str) -> AsyncIterator[BlobMeta]:
        async for props in self._container.list_blobs(name_starts_with=key_prefix):
            yield _meta(props.name, props)

    async def _delete(self, key: str) -> None:
        await self._container.delete_blob(key, delete_snapshots="include")  # and snapshots

    async def _close(self) -> None:
        """Close the HTTP sessions (and the Azure AD credential)."""
        await self._container.close()
        await self._service.close()
        if self._credential is not None:
            await self._credential.close()

    # --- signed reads ------------------------------------------------------------------

    async def signed_url(
        self, path: str, expires: timedelta, *, content_type: str | None = None
    ) -> str | None:
        """A read-only SAS URL for the blob, valid from a minute ago until `expires` from now."""
        name = self._key(path)  # and the store is open
        now = datetime.now(UTC)
        expiry = now + expires
        sas_key: dict[str, Any] = {}
        if self._account_key:
            sas_key["account_key"] = self._account_key
        elif self._credential is not None:
            sas_key["user_delegation_key"] = await self._delegation_key(now, expiry)
        else:
            return None
        token = generate_blob_sas(
            account_name=self._service.account_name or "",
            container_name=self._container.container_name,
            blob_name=name,
            permission=BlobSasPermissions(read=True),
            start=now - timedelta(minutes=1),  # clock skew between us and the service
            expiry=expiry,
            content_type=content_type,
            **sas_key,
        )
        return f"{self._container.get_blob_client(name).url}?{token}"

    async def _delegation_key(self, now: datetime, expiry: datetime) -> UserDelegationKey:
        """A user delegation key covering `expiry`, cached and renewed a day at a time."""
        if self._delegation is None or self._delegation_until < expiry:
            until = max(expiry, now + timedelta(days=1))
            try:
                self._delegation = await self._service.get_user_delegation_key(
                    now - timedelta(minutes=1), until
                )
            except AzureError as exc:
                raise self._unavailable("get a user delegation key", exc) from exc
            self._delegation_until = until
        return self._delegation


def _key_of(connection_string: str) -> str | None:
    """The AccountKey of a connection string, if it has one."""
    for item in connection_string.split(";"):
        name, _, value = item.partition("=")
        if name.strip().lower() == "accountkey":
            return value.strip()
    return None
