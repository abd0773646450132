"""POST /v1/images: stream the multipart body, ingest each file, answer per file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from imgest.admission import Admission
from imgest.api.idempotency import HEADER, IdempotencyGate, parse_key
from imgest.api.images import Links, image_out
from imgest.api.multipart import Form, UploadLimits, openapi_body, read_form
from imgest.api.problems import PROBLEM_JSON, problem_response
from imgest.api.schemas import (
    AppliedOut,
    ErrorOut,
    Problem,
    SimilarOut,
    UploadItemOut,
    UploadOut,
)
from imgest.errors import ClientError, InvalidLabel, MalformedMultipart, NoFiles
from imgest.ingest import IngestResult, IngestService
from imgest.labels import check_label, check_tags
from imgest.metrics import Metrics
from imgest.scoring.batcher import MicroBatcher

router = APIRouter(tags=["upload"])

TAG_FIELDS = ("tag", "tags")
LABEL_FIELD = "label"
# Text fields at least this big (in characters, all together) are split and checked in a
# worker thread: the largest form (max_fields x max_field_bytes of tags) is a pass over a
# megabyte that should not hold up every other request on the event loop.
THREAD_FIELD_CHARS = 64 * 1024

_REQUEST_BODY = openapi_body(
    {
        "file": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "One or more image files (any field name with a filename).",
        },
        "tag": {"type": "string", "description": "Tags, repeated or comma-separated."},
        "description": {"type": "string"},
        "label": {"type": "string", "description": "Ground truth of every file in the request."},
    },
    additionalProperties={"type": "string"},
)


def split_fields(
    pairs: Sequence[tuple[str, str]],
) -> tuple[dict[str, str | list[str]], list[str], str | None]:
    """Text fields -> (fields stored with each image, tags, ground-truth label); repeated
    names become lists."""
    fields: dict[str, str | list[str]] = {}
    raw_tags: list[str] = []
    labels = [value for name, value in pairs if name == LABEL_FIELD]
    if len(labels) > 1:
        raise InvalidLabel("Send at most one label field per request.")
    label = check_label(labels[0]) if labels else None
    for name, value in pairs:
        if name == LABEL_FIELD:
            continue
        if name in TAG_FIELDS:
            raw_tags.extend(value.split(","))
            continue
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = value
    return fields, check_tags(raw_tags), label


async def read_fields(
    pairs: Sequence[tuple[str, str]],
) -> tuple[dict[str, str | list[str]], list[str], str | None]:
    """split_fields, in a worker thread when the fields are big enough to stall the loop."""
    if sum(len(value) for _, value in pairs) < THREAD_FIELD_CHARS:
        return split_fields(pairs)
    return await anyio.to_thread.run_sync(split_fields, pairs)


def item_out(result: IngestResult, links: Links) -> UploadItemOut:
    """One file's entry in the upload response."""
    near = [SimilarOut(id=m.id, score=m.score) for m in result.near_duplicates]
    if result.record is None:
        assert result.error is not None
        return UploadItemOut(
            status="rejected",
            filename=result.filename,
            content_type=result.content_type,
            bytes=result.size,
            error=ErrorOut(
                code=result.error.code, detail=result.error.detail, status=result.error.status
            ),
            near_duplicates=near,
        )
    view = image_out(result.record, links).model_dump(
        exclude={"content_type", "filename", "frames", "created_at"}
    )
    applied = result.applied
    return UploadItemOut(
        **view,
        status=result.status,
        filename=result.filename,
        content_type=result.content_type,
        applied=None
        if applied is None
        else AppliedOut(
            tags_added=list(applied.tags_added),
            label=applied.label,
            fields_set=list(applied.fields_set),
            fields_conflict=list(applied.fields_conflict),
        ),
        near_duplicates=near,
    )


def body_reservation(content_length: str | None, limits: UploadLimits) -> int:
    """Bytes an upload reserves while active: its declared size, else the request cap."""
    try:
        declared = int(content_length) if content_length is not None else -1
    except ValueError:
        declared = -1  # read_form refuses it; reserve as if unknown
    if declared < 0:
        return limits.max_request_bytes
    return min(declared, limits.max_request_bytes)


def client_of(request: Request) -> str:
    """Who an upload counts against: its API key, else its address."""
    key = getattr(request.state, "api_key", None)
    if key is not None:
        return f"key:{key.id}"
    return f"addr:{request.client.host if request.client else '?'}"


@asynccontextmanager
async def admitted_form(request: Request) -> AsyncIterator[Form]:
    """The request's multipart form, read under an upload slot that is held until the block
    ends; it has at least one file part (else `NoFiles`)."""
    state = request.app.state
    limits: UploadLimits = state.upload_limits
    admission: Admission = state.admission
    content_length = request.headers.get("content-length")
    async with admission.slot(client_of(request), body_reservation(content_length, limits)):
        try:
            form = await read_form(
                request.headers.get("content-type"),
                content_length,
                request.stream(),  # under the guard's body clock and cap (api/guard.py)
                limits,
            )
        except ClientDisconnect:
            # Nobody is left to answer; this keeps it out of the error log as a client fault.
            raise MalformedMultipart(
                "The client disconnected before the body was complete."
            ) from None
        if not form.files:
            raise NoFiles()
        yield form


def count_results(metrics: Metrics, results: Sequence[IngestResult]) -> None:
    """Per-file outcomes and newly stored bytes into the metrics."""
    for r in results:
        code = r.error.code if r.error is not None else ""
        metrics.files.labels(status=r.status, code=code).inc()
        if r.status == "created":
            metrics.ingested_bytes.inc(r.size)


@router.post(
    "/v1/images",
    status_code=201,
    response_model=UploadOut,
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses={
        200: {"model": UploadOut, "description": "Every file was already stored."},
        207: {"model": UploadOut, "description": "Some files were rejected (see each error)."},
        400: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        408: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        409: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        413: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        415: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        422: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        429: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        503: {"model": Problem, "content": {PROBLEM_JSON: {}}},
    },
)
async def upload_images(
    request: Request,
    model: Annotated[
        str | None,
        Query(max_length=200, description="Score with NAME[@VERSION] instead of the active model."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="A unique key per logical upload (e.g. a UUID): a retry with the same "
            "key and content gets the first response again without new work.",
        ),
    ] = None,
) -> Response:
    """Upload one or more images (multipart/form-data) with text fields, tags and a label.

    Each file is hashed while it streams in, sniffed, size-checked from its header, normalized
    in memory, stored (original + rendition), scored and recorded. 201 when something was
    created, 200 when every file was already stored, 207 when some were rejected, and the
    rejection's own 4xx (as problem+json with the per-file `images`) when all were.
    Bytes already stored take the request's new tags, and its label and fields where the
    image has none (a different stored value is kept: a conflict); `applied` says, per file.
    With `Idempotency-Key`, a repeat of the same request answers the stored first response
    (`Idempotent-Replayed: true`); 422 `idempotency_key_reused` for different content or query
    parameters, 409
    `idempotency_key_in_flight` while the first request is still processed.
    """
    key = parse_key(idempotency_key)
    state = request.app.state
    service: IngestService = state.ingest
    scorer = await service.scorer(model)  # an unknown model is refused before the body is read
    async with admitted_form(request) as form:
        if key is None:
            return await ingest_form(request, form, scorer)
        gate: IdempotencyGate = state.idempotency

        async def work() -> Response:
            try:
                return await ingest_form(request, form, scorer)
            except ClientError as exc:  # a final answer: stored and replayed like any other
                return problem_response(exc, request)

        # Keys are scoped to the API key that sent them ("" with auth off).
        api_key = getattr(request.state, "api_key", None)
        principal = api_key.id if api_key is not None else ""
        return await gate.run(principal, key, form, work, request.url.query)


async def ingest_form(request: Request, form: Form, scorer: MicroBatcher) -> Response:
    """Ingest every file of a parsed form with `scorer` and build the per-file answer."""
    state = request.app.state
    service: IngestService = state.ingest
    fields, tags, label = await read_fields(form.fields)
    results = await service.ingest_many(form.files, fields, tags, scorer=scorer, label=label)
    form.files.clear()  # the bodies: let them go before the response is built
    count_results(state.metrics, results)
    links: Links = state.links
    items = [item_out(r, links) for r in results]
    body = UploadOut(images=items).model_dump(mode="json")
    rejected = [r for r in results if r.status == "rejected"]
    if len(rejected) == len(results):
        first = rejected[0].error
        assert first is not None
        return problem_response(first, request, images=body["images"])
    if rejected:
        status = 207
    elif any(r.status == "created" for r in results):
        status = 201
    else:
        status = 200
    return JSONResponse(body, status_code=status)
