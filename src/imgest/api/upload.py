"""POST /v1/images: stream the multipart body, ingest each file, answer per file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from imgest.api.images import Links, image_out
from imgest.api.multipart import UploadLimits, read_form
from imgest.api.problems import PROBLEM_JSON, problem_response
from imgest.api.schemas import ErrorOut, Problem, UploadItemOut, UploadOut
from imgest.errors import InvalidLabel, MalformedMultipart, NoFiles
from imgest.ingest import IngestResult, IngestService
from imgest.labels import check_label, check_tags

router = APIRouter(tags=["upload"])

TAG_FIELDS = ("tag", "tags")
LABEL_FIELD = "label"

_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "One or more image files (any field name with a filename).",
                    },
                    "tag": {
                        "type": "string",
                        "description": "Tags, repeated or comma-separated.",
                    },
                    "description": {"type": "string"},
                    "label": {
                        "type": "string",
                        "description": "Ground-truth label of every file in the request.",
                    },
                },
                "additionalProperties": {"type": "string"},
            }
        }
    },
}


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


def item_out(result: IngestResult, links: Links) -> UploadItemOut:
    """One file's entry in the upload response."""
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
        )
    view = image_out(result.record, links).model_dump(
        exclude={"content_type", "filename", "frames", "created_at"}
    )
    return UploadItemOut(
        **view,
        status=result.status,
        filename=result.filename,
        content_type=result.content_type,
    )


@router.post(
    "/v1/images",
    status_code=201,
    response_model=UploadOut,
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses={
        200: {"model": UploadOut, "description": "Every file was already stored."},
        207: {"model": UploadOut, "description": "Some files were rejected (see each error)."},
        400: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        413: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        415: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        422: {"model": Problem, "content": {PROBLEM_JSON: {}}},
        503: {"model": Problem, "content": {PROBLEM_JSON: {}}},
    },
)
async def upload_images(
    request: Request,
    model: Annotated[
        str | None,
        Query(max_length=200, description="Score with NAME[@VERSION] instead of the active model."),
    ] = None,
) -> Response:
    """Upload one or more images (multipart/form-data) with text fields, tags and a label.

    Each file is hashed while it streams in, sniffed, size-checked from its header, normalized
    in memory, stored (original + rendition), scored and recorded. 201 when something was
    created, 200 when every file was already stored, 207 when some were rejected, and the
    rejection's own 4xx (as problem+json with the per-file `images`) when all were.
    """
    limits: UploadLimits = request.app.state.upload_limits
    service: IngestService = request.app.state.ingest
    links: Links = request.app.state.links
    scorer = await service.scorer(model)  # an unknown model is refused before the body is read
    try:
        form = await read_form(
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
            limits,
        )
    except ClientDisconnect:
        # Nobody is left to answer; this keeps it out of the error log as a client fault.
        raise MalformedMultipart("The client disconnected before the body was complete.") from None
    if not form.files:
        raise NoFiles()
    fields, tags, label = split_fields(form.fields)
    results = await service.ingest_many(form.files, fields, tags, scorer=scorer, label=label)
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
