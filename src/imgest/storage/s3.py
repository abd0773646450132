"""S3Store: blobs in one S3 bucket (boto3, run in worker threads); AWS S3, Ceph radosgw, MinIO.

URL: `s3://<bucket>[/<key prefix>]?<parameters>`:

- `endpoint=<URL>`: an S3-compatible server (radosgw, MinIO); default: AWS for the region;
- `region=<name>` (default: boto3's configuration, else us-east-1);
- `addressing=path|virtual|auto`: path style (`<endpoint>/<bucket>/<key>`) or virtual-hosted
  style (`<bucket>.<endpoint host>/<key>`); auto (default) lets botocore choose;
- `key_id=<access key id>&secret=<secret key>` (and `session_token=`): static credentials;
  without them boto3's usual chain applies (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the
  environment, ~/.aws, web identity, instance or container roles);
- `timeout=<s>`, `retries=<n>` override the settings. `store.url` never shows the secret.

Writes: a blob up to `multipart_bytes` (8 MiB) is one PutObject; a larger one is a multipart
upload of `part_bytes` (8 MiB) parts, four in flight, each read straight from the caller's
buffer (a `ViewReader`: no part is copied whole); a failed multipart upload is aborted.
mode="create" sends `If-None-Match: *`, which makes PutObject atomic create-only (AWS S3; on
radosgw 16 the contract's 20 racing creators leave exactly one winner). On a multipart upload
the header goes on the completion, where AWS S3 honours it atomically; radosgw 16 (what the
tests run) ignores it there, so the store also checks with HEAD before uploading, and two
creators of one large blob racing inside that window may both succeed, the later completion
winning. For content-addressed blobs both write the same bytes, so nothing is lost; callers that
need strict create-only for large blobs on such servers should raise `multipart_bytes` (a
PutObject may be up to 5 GiB).

The bucket is created (private: no ACL is sent) on the first write if it is missing. Reads can
be handed out as SigV4 presigned GET URLs (`signed_url`).

Why one long module: it holds S3 and nothing else (one backend a module, as azure.py); the
shared skeleton is in `storage.remote`. What is left is S3's own: URL options, create-only
puts, the multipart upload with its zero-copy part reader, paged listing and presigning.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Self, TypeVar

import anyio
import anyio.to_thread
import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from imgest.storage.base import (
    BlobExistsError,
    BlobMeta,
    BlobNotFoundError,
    PutMode,
    StoreOptions,
    StoreUnavailableError,
)
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

_T = TypeVar("_T")
MiB = 1024 * 1024
# S3's bucket naming rules (the DNS-compatible ones): 3-63 of a-z, 0-9, dots and dashes.
_BUCKET = re.compile(r"(?=.{3,63}$)[a-z0-9][a-z0-9.-]*[a-z0-9]")
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_EXISTS = {"PreconditionFailed", "412", "ConditionalRequestConflict"}
_NETWORK = (BotoCoreError, OSError, urllib3.exceptions.HTTPError)


_session_lock = threading.Lock()
_sessions: list[boto3.session.Session] = []


def _session() -> boto3.session.Session:
    """One boto3 session per process: it loads the S3 service model once for every client."""
    with _session_lock:
        if not _sessions:
            _sessions.append(boto3.session.Session())
        return _sessions[0]


class ViewReader(io.RawIOBase):
    """A seekable read-only file over a slice of the caller's buffer: a part body, not a copy.

    botocore reads it in pieces (to hash it for SigV4, then to send it) and seeks back in
    between and on a retry; only those pieces are ever copied.
    """

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Copy the next bytes into `buffer`."""
        n = max(0, min(len(buffer), len(self._view) - self._pos))
        buffer[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to `offset` from the start, the current position or the end."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _meta(path: str, answer: dict[str, Any]) -> BlobMeta:
    """A GetObject or HeadObject answer's metadata."""
    modified = utc(answer["LastModified"])
    return BlobMeta(path, int(answer["ContentLength"]), modified, bare_etag(answer.get("ETag")))


def _server_time(response: dict[str, Any]) -> datetime:
    """The server's Date header (S3 answers a write with its time, not Last-Modified)."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    return utc(parsedate_to_datetime(date)) if date else datetime.now(UTC)


class S3Store(RemoteStore):
    """A BlobStore on one S3 bucket (optionally under a key prefix)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        prefix: str = "",
        url: str,
        region: str | None = None,
        multipart_bytes: int = 8 * MiB,
        part_bytes: int = 8 * MiB,
        parallel_parts: int = 4,
    ) -> None:
        """Use `client` (a boto3 S3 client already configured with timeouts and retries)."""
        if part_bytes < 5 * MiB or multipart_bytes < 0 or parallel_parts < 1:
            raise ValueError("S3 parts must be at least 5 MiB (all but the last)")
        super().__init__(url=url, prefix=prefix)
        self.bucket = bucket
        self.region = region
        self.multipart_bytes = multipart_bytes
        self.part_bytes = part_bytes
        self.parallel_parts = parallel_parts
        self._client = client

    @classmethod
    def from_url(cls, url: str, *, options: StoreOptions | None = None) -> Self:
        """A store for `s3://<bucket>[/<prefix>]?...` (see the module docstring)."""
        parts = parse_remote_url(url, "s3", _BUCKET)
        opts = parts.options(options or StoreOptions())
        endpoint = parts.pop("endpoint")
        region = parts.pop("region")
        addressing = parts.pop("addressing", "auto")
        if addressing not in ("path", "virtual", "auto"):
            raise ValueError("s3:// addressing must be path, virtual or auto")
        credentials = {
            "aws_access_key_id": parts.pop("key_id"),
            "aws_secret_access_key": parts.pop("secret"),
            "aws_session_token": parts.pop("session_token"),
        }
        multipart = int(parts.pop("multipart_bytes") or 8 * MiB)
        part = int(parts.pop("part_bytes") or 8 * MiB)
        parts.refuse_leftovers()
        config = Config(
            s3={"addressing_style": addressing},
            signature_version="s3v4",
            connect_timeout=min(opts.timeout_s, 10.0),
            read_timeout=opts.timeout_s,
            retries={"total_max_attempts": opts.retries + 1, "mode": "standard"},
            max_pool_connections=32,
        )
        session = _session()
        with _session_lock:  # a boto3 session is not thread-safe; its clients are
            client = session.client(
                "s3",
                endpoint_url=endpoint,
                region_name=region or session.region_name or "us-east-1",
                config=config,
                **{k: v for k, v in credentials.items() if v},
            )
        shown = [f"{k}={v}" for k, v in (("endpoint", endpoint), ("region", region)) if v]
        return cls(
            client,
            parts.container,
            prefix=parts.prefix,
            url=parts.public("&".join(shown)),
            region=client.meta.region_name,
            multipart_bytes=multipart,
            part_bytes=part,
        )

    # --- helpers -------------------------------------------------------------------------

    async def _call(self, what: str, fn: Callable[..., _T], **kwargs: Any) -> _T:
        """Run one blocking client call in a worker thread; network trouble is unavailable."""
        self._check_open()
        try:
            return await anyio.to_thread.run_sync(lambda: fn(**kwargs))
        except ClientError:
            raise  # the caller maps the codes it expects
        except _NETWORK as exc:
            raise self._unavailable(what, exc) from exc

    def _fault(self, exc: Exception) -> Fault | None:
        if not isinstance(exc, ClientError):
            return "failed" if isinstance(exc, _NETWORK) else None
        if _code(exc) == "NoSuchBucket":
            return "no_container"
        if _code(exc) in _NOT_FOUND:
            return "no_blob"
        return "exists" if _code(exc) in _EXISTS else "failed"

    async def _create_container(self) -> None:
        """Create the bucket if it is missing (no ACL: private)."""
        extra: dict[str, Any] = {}
        if self.region and self.region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await self._call(
                "create bucket", self._client.create_bucket, Bucket=self.bucket, **extra
            )
            log.info("created bucket %s", self.bucket)
        except ClientError as exc:
            if _code(exc) == "AccessDenied":
                log.info("no right to create bucket %s; assuming it exists", self.bucket)
            elif _code(exc) != "BucketAlreadyOwnedByYou":
                raise self._unavailable("create bucket", exc) from exc

    # --- the calls (RemoteStore maps their errors) -------------------------------------

    async def _put(self, path: str, key: str, data: bytes, mode: PutMode) -> BlobMeta:
        """PutObject, or a multipart upload when large; see the module docstring."""
        condition = {"IfNoneMatch": "*"} if mode == "create" else {}
        if len(data) > self.multipart_bytes:
            if mode == "create" and await self._exists(path):
                raise BlobExistsError(path)
            await self._multipart(path, key, data, condition)
            # radosgw's completion answer may lack the ETag: ask for the final metadata.
            return await self.head(path)
        what = f"put {path!r}"
        call = self._client.put_object
        done = await self._call(what, call, Bucket=self.bucket, Key=key, Body=data, **condition)
        return BlobMeta(path, len(data), _server_time(done), bare_etag(done.get("ETag")))

    async def _exists(self, path: str) -> bool:
        try:
            await self.head(path)
        except BlobNotFoundError:
            return False
        return True

    async def _multipart(self, path: str, key: str, data: bytes, condition: dict[str, str]) -> None:
        """Upload `data` in parts and complete; abort the upload if anything fails."""
        what = f"multipart put {path!r}"
        upload = await self._call(
            what, self._client.create_multipart_upload, Bucket=self.bucket, Key=key
        )
        upload_id = upload["UploadId"]
        view = memoryview(data)
        starts = range(0, len(view), self.part_bytes)
        etags: dict[int, str] = {}

        def send(number: int, start: int) -> Callable[[], Awaitable[None]]:
            async def job() -> None:
                body = ViewReader(view[start : start + self.part_bytes])
                part = await self._call(
                    what,
                    self._client.upload_part,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                )
                etags[number] = part["ETag"]

            return job

        try:
            jobs = [send(number, start) for number, start in enumerate(starts, start=1)]
            await run_bounded(jobs, self.parallel_parts)
            await self._call(
                what,
                self._client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
                },
                **condition,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._abort(key, upload_id)
            raise

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self._call(
                "abort multipart upload",
                self._client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )
        except (ClientError, StoreUnavailableError):
            log.warning("could not abort multipart upload of %s (%s)", key, upload_id)

    async def _get(self, path: str, key: str) -> ChunkedReader:
        """GetObject; the body is read in worker threads, in pieces of at most 1 MiB."""
        what = f"get {path!r}"
        answer = await self._call(what, self._client.get_object, Bucket=self.bucket, Key=key)
        body = answer["Body"]
        meta = _meta(path, answer)

        async def pieces() -> AsyncIterator[bytes]:
            while True:
                try:
                    piece = await anyio.to_thread.run_sync(body.read, MiB)
                except _NETWORK as exc:
                    raise self._unavailable(f"read {path!r}", exc) from exc
                if not piece:
                    return
                yield piece

        async def release() -> None:
            await anyio.to_thread.run_sync(body.close)

        reader = ChunkedReader(meta, pieces(), release)
        weakref.finalize(reader, body.close)  # a reader never read gives its connection back
        return reader

    async def _head(self, path: str, key: str) -> BlobMeta:
        what = f"head {path!r}"
        return _meta(
            path, await self._call(what, self._client.head_object, Bucket=self.bucket, Key=key)
        )

    async def _list(self, key_prefix: str) -> AsyncIterator[BlobMeta]:
        """ListObjectsV2 by key prefix, page by page."""
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key_prefix}
        while True:
            what = f"list {key_prefix!r}"
            page = await self._call(what, self._client.list_objects_v2, **request)
            for obj in page.get("Contents", []):
                yield BlobMeta(
                    obj["Key"], int(obj["Size"]), utc(obj["LastModified"]),
                    bare_etag(obj.get("ETag")),
                )  # fmt: skip
            if not page.get("IsTruncated"):
                return
            request["ContinuationToken"] = page["NextContinuationToken"]

    async def _delete(self, key: str) -> None:
        """DeleteObject (S3 answers 204 for a missing key too)."""
        what = f"delete {key!r}"
        await self._call(what, self._client.delete_object, Bucket=self.bucket, Key=key)

    async def _close(self) -> None:
        """Close the client's connection pool."""
        await anyio.to_thread.run_sync(self._client.close)

    # --- signed reads ------------------------------------------------------------------

    async def signed_url(
        self, path: str, expires: timedelta, *, content_type: str | None = None
    ) -> str | None:
        """A SigV4 presigned GET URL (at most 7 days), or None without credentials to sign."""
        key = self._key(path)  # and the store is open
        params: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if content_type:
            params["ResponseContentType"] = content_type
        seconds = max(1, min(int(expires.total_seconds()), 7 * 24 * 3600))
        try:
            url: str = await anyio.to_thread.run_sync(
                lambda: self._client.generate_presigned_url(
                    "get_object", Params=params, ExpiresIn=seconds
                )
            )
        except BotoCoreError:
            log.warning("%r cannot presign (no credentials?); proxying reads", self)
            return None
        return url
