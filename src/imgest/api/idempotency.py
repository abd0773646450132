"""The Idempotency-Key header on POST /v1/images (IETF httpapi idempotency-key draft).

Same key and same request -> the first response again, without new work; same key and a
different request (other files, fields or query parameters) -> 422; same key while the first
is still processed -> 409. Only final answers (2xx, 4xx) are stored; a 5xx releases the key
so that a retry runs afresh.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
from fastapi import Response

from imgest.api.multipart import Form
from imgest.catalog.idempotency import IdempotencyKeys, StoredResponse
from imgest.errors import IdempotencyKeyInFlight, IdempotencyKeyInvalid, IdempotencyKeyReused

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
PURGE_EVERY_S = 60.0


def parse_key(raw: str | None) -> str | None:
    """The key from the header value (a bare token or an RFC 8941 sf-string), or None if absent.

    Raises IdempotencyKeyInvalid for an empty, over-long or non-ASCII key.
    """
    if raw is None:
        return None
    value = raw.strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not 1 <= len(value) <= MAX_KEY_LENGTH:
        raise IdempotencyKeyInvalid(
            f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} characters long."
        )
    # Starlette decodes header bytes as Latin-1, so any non-ASCII byte shows up here.
    if not all(" " <= c <= "~" for c in value):
        raise IdempotencyKeyInvalid(
            "The Idempotency-Key header must be printable ASCII (e.g. a UUID)."
        )
    return value


def fingerprint(form: Form, query: str = "") -> str:
    """SHA-256 of what the request asks for: its query parameters (`?model=` scores with
    another model), each file's name, type and content hash, and the fields.

    Built from the per-file SHA-256 computed while the body streamed in, not from the raw
    body: a client that rebuilds its multipart body for a retry gets a new random boundary,
    and that must not turn its retry into a 422. Query parameters count in name order, so a
    client that sends them in another order is still retrying the same request.
    """
    digest = hashlib.sha256()
    for name, value in sorted(parse_qsl(query, keep_blank_values=True)):
        digest.update(json.dumps(["query", name, value]).encode() + b"\n")
    for f in form.files:
        error = f.error.code if f.error is not None else None
        part = ["file", f.filename, f.content_type, f.sha256, f.size, error]
        digest.update(json.dumps(part).encode() + b"\n")
    for name, value in form.fields:
        digest.update(json.dumps(["field", name, value]).encode() + b"\n")
    return digest.hexdigest()


class IdempotencyGate:
    """Runs a request's work at most once per key; replays the stored answer afterwards."""

    def __init__(self, keys: IdempotencyKeys) -> None:
        self.keys = keys
        self.replays = 0
        self._last_purge = 0.0

    async def run(
        self,
        principal: str,
        key: str,
        form: Form,
        work: Callable[[], Awaitable[Response]],
        query: str = "",
    ) -> Response:
        """The response of `work()` run once for this key, or the one stored for it; `query`
        is the request's query string (part of what the key promises)."""
        await self._purge_now_and_then()
        claim = await anyio.to_thread.run_sync(
            self.keys.claim, principal, key, fingerprint(form, query), datetime.now(UTC)
        )
        if claim.outcome == "mismatch":
            raise IdempotencyKeyReused()
        if claim.outcome == "in_flight":
            raise IdempotencyKeyInFlight()
        if claim.outcome == "replay":
            assert claim.response is not None
            self.replays += 1
            return replayed(claim.response)
        try:
            response = await work()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.keys.release, principal, key)
            raise
        if response.status_code >= 500:
            await anyio.to_thread.run_sync(self.keys.release, principal, key)
            return response
        stored = StoredResponse(
            status=response.status_code,
            content_type=response.headers.get("content-type", "application/json"),
            body=bytes(response.body),
        )
        await anyio.to_thread.run_sync(self.keys.complete, principal, key, stored)
        return response

    async def _purge_now_and_then(self) -> None:
        # Expired keys are deleted lazily, at most once a minute per process.
        now = time.monotonic()
        if now - self._last_purge < PURGE_EVERY_S:
            return
        self._last_purge = now
        await anyio.to_thread.run_sync(self.keys.purge, datetime.now(UTC))


def replayed(stored: StoredResponse) -> Response:
    """The stored response again, marked as a replay."""
    return Response(
        content=stored.body,
        status_code=stored.status,
        headers={"Content-Type": stored.content_type, REPLAYED_HEADER: "true"},
    )
