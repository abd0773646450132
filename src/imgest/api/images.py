"""Read, list and delete stored images: metadata, original bytes, renditions."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import BeforeValidator

from imgest.api.auth import holds
from imgest.api.schemas import (
    BulkLabel,
    BulkLabelOut,
    ImageOut,
    ImagePage,
    ImagePatch,
    LabelOut,
    Link,
    PredictionOut,
    Problem,
    RenditionOut,
)
from imgest.catalog.records import ImageRecord
from imgest.catalog.repo import ImageFilter, Sort
from imgest.corpus import Corpus, OpenBlob
from imgest.duplicates import GroupCache, members
from imgest.errors import ImageNotFound, InvalidParameter
from imgest.labels import check_label, check_tags

router = APIRouter(prefix="/v1/images", tags=["images"])

_ID = re.compile(r"[0-9a-f]{64}")


def _iso8601(value: object) -> object:
    # pydantic also takes numbers as Unix times; the API documents ISO 8601 and means it.
    if isinstance(value, str) and not re.match(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("expected an ISO 8601 date or date-time, e.g. 2026-11-25T10:00:00Z")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso8601)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such image or rendition."},
    503: {"model": Problem, "description": "Storage or catalog unavailable."},
}


def image_id(raw: str) -> str:
    """A valid image id (64 hex digits, lower case) or ImageNotFound."""
    value = raw.lower()
    if not _ID.fullmatch(value):
        raise ImageNotFound("Image ids are 64 hexadecimal digits (the SHA-256 of the bytes).")
    return value


class Links:
    """Builds the URLs a response points at."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def original(self, image: str) -> str:
        return f"{self.base}/v1/images/{image}/original"

    def rendition(self, image: str, pipeline: str) -> str:
        return f"{self.base}/v1/images/{image}/renditions/{pipeline}"


def renditions_out(record: ImageRecord, links: Links) -> dict[str, RenditionOut]:
    """One entry per pipeline name (the version served at that URL)."""
    out: dict[str, RenditionOut] = {}
    for r in record.renditions:
        out[r.pipeline] = RenditionOut(
            width=r.width,
            height=r.height,
            url=links.rendition(record.id, r.pipeline),
            pipeline_version=r.pipeline_version,
            bytes=r.bytes,
            content_type=r.content_type,
            source="intermediate" if r.source == "intermediate" else "original",
        )
    return out


def predictions_out(record: ImageRecord) -> list[PredictionOut]:
    """The record's predictions as response objects."""
    return [
        PredictionOut(
            model=p.model,
            model_version=p.model_version,
            pipeline=p.pipeline,
            pipeline_version=p.pipeline_version,
            top=[LabelOut(label=t.label, index=t.index, score=t.score) for t in p.top],
            created_at=p.created_at,
        )
        for p in record.predictions
    ]


def image_out(record: ImageRecord, links: Links) -> ImageOut:
    """The full JSON view of one image."""
    return ImageOut(
        id=record.id,
        format=record.format,
        content_type=record.content_type,
        width=record.width,
        height=record.height,
        frames=record.frames,
        bytes=record.bytes,
        filename=record.filename,
        created_at=record.created_at,
        fields=record.fields,
        tags=list(record.tags),
        original=Link(url=links.original(record.id)),
        renditions=renditions_out(record, links),
        predictions=predictions_out(record),
        label=record.label,
    )


def _corpus(request: Request) -> Corpus:
    corpus: Corpus = request.app.state.corpus
    return corpus


def _links(request: Request) -> Links:
    links: Links = request.app.state.links
    return links


Confidence = Annotated[
    float | None,
    Query(ge=0.0, le=1.0, description="Top-1 score of the latest prediction, from 0 to 1."),
]


async def group_filter(request: Request, group: str | None) -> frozenset[str] | None:
    """The images of near-duplicate group `group` (None for no group filter); 422 when the
    server computes no groups, so a filter that cannot work is not silently ignored."""
    if group is None:
        return None
    cache: GroupCache = request.app.state.groups
    groups = await cache.current()
    if groups is None:
        raise InvalidParameter(
            "group: near-duplicate groups are not computed on this server (no embeddings)."
        )
    return members(groups, image_id_param(group, "group"))


def image_id_param(raw: str, name: str) -> str:
    """An image id given as a parameter (64 hex digits, any case), else InvalidParameter."""
    value = raw.lower()
    if not _ID.fullmatch(value):
        raise InvalidParameter(f"{name} is an image id: 64 hexadecimal digits.")
    return value


@router.get("", response_model=ImagePage, responses={422: {"model": Problem}})
async def list_images(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    cursor: Annotated[str | None, Query(max_length=512, description="From next_cursor.")] = None,
    label: Annotated[
        str | None, Query(max_length=200, description="Top-1 predicted label.")
    ] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[
        IsoDateTime | None, Query(description="Uploaded at or after (ISO 8601).")
    ] = None,
    until: Annotated[IsoDateTime | None, Query(description="Uploaded before (ISO 8601).")] = None,
    min_confidence: Confidence = None,
    max_confidence: Confidence = None,
    disagrees: Annotated[
        bool,
        Query(
            description="Only images whose ground truth the latest prediction's top-1 does "
            "not name (neither the class nor one of its synonyms)."
        ),
    ] = False,
    group: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Only the images of this near-duplicate group (an image id); 422 "
            "where the server computes no groups.",
        ),
    ] = None,
    sort: Annotated[
        Sort,
        Query(
            description="newest (upload time), most_confident or least_confident (top-1 "
            "score of the latest prediction; images without one come last, resp. first)."
        ),
    ] = "newest",
) -> ImagePage:
    """Stored images, newest first (or by confidence), with keyset pagination and filters."""
    where = ImageFilter(
        label=label,
        tag=tag,
        since=since,
        until=until,
        min_confidence=min_confidence,
        max_confidence=max_confidence,
        disagrees=disagrees,
        ids=await group_filter(request, group),
    )
    page = await _corpus(request).list(limit=limit, cursor=cursor, where=where, sort=sort)
    links = _links(request)
    return ImagePage(items=[image_out(r, links) for r in page.items], next_cursor=page.next_cursor)


@router.patch("", response_model=BulkLabelOut, responses={422: {"model": Problem}})
async def label_images(request: Request, body: BulkLabel) -> BulkLabelOut:
    """Set (or, with null, clear) the ground-truth label of up to 500 images in one
    transaction; ids that name no stored image are listed in `not_found`."""
    ids = list(dict.fromkeys(image_id_param(i, "ids") for i in body.ids))
    label = None if body.label is None else check_label(body.label)
    updated = await _corpus(request).set_labels(ids, label)
    found = set(updated)
    return BulkLabelOut(
        label=label, updated=list(updated), not_found=[i for i in ids if i not in found]
    )


ORIGINAL_LENGTH = "Imgest-Original-Length"
ORIGINAL_TYPE = "Imgest-Original-Type"


def _image_response(record: ImageRecord, links: Links) -> Response:
    # One builder for GET and HEAD, so HEAD's Content-Length is exactly GET's body length.
    body = image_out(record, links).model_dump_json().encode()
    headers = {ORIGINAL_LENGTH: str(record.bytes), ORIGINAL_TYPE: record.content_type}
    return Response(body, media_type="application/json", headers=headers)


@router.get("/{image}", response_model=ImageOut, responses=_ERRORS)
async def get_image(request: Request, image: str) -> Response:
    """One image: metadata, fields, tags, renditions and every prediction."""
    record = await _corpus(request).get(image_id(image))
    return _image_response(record, _links(request))


@router.head("/{image}", response_class=Response, responses=_ERRORS)
async def head_image(request: Request, image: str) -> Response:
    """Is this image (by SHA-256 of its bytes) stored? 200 or 404, no body.

    A client hashes a file locally and asks here first, to skip sending bytes the server
    already has. `Imgest-Original-Length` and `Imgest-Original-Type` describe the original.
    """
    record = await _corpus(request).get(image_id(image))
    return _image_response(record, _links(request))


_ENTITY_TAG = re.compile(r'(?:W/)?("[^",]*")')


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether If-None-Match names `etag` (RFC 9110 13.1.2: `*`, or a list of entity tags
    compared weakly); a header that holds the tag only as part of a longer one does not."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    for member in if_none_match.split(","):
        found = _ENTITY_TAG.fullmatch(member.strip(" \t"))
        if found is not None and found.group(1) == etag:
            return True
    return False


def _blob_response(request: Request, blob: OpenBlob) -> Response:
    headers = {
        "ETag": blob.etag,
        "Cache-Control": "private, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    if etag_matches(request.headers.get("if-none-match"), blob.etag):
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(blob.reader.meta.size)
    if request.method == "HEAD":  # the headers only: never read the bytes
        return Response(status_code=200, headers=headers, media_type=blob.content_type)
    return StreamingResponse(blob.reader.stream(), media_type=blob.content_type, headers=headers)


_BLOB: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/*": {}}, "description": "The bytes."},
    403: {"model": Problem, "description": "A rendition not stored yet, asked by a read-only key."},
    304: {"description": "Not modified (If-None-Match)."},
    307: {"description": "redirect=true on Azure/S3: a short-lived signed URL of the bytes."},
    **_ERRORS,
}

Redirect = Annotated[
    bool,
    Query(
        description="Answer 307 to a short-lived signed storage URL (SAS/presigned) where "
        "the store can make one; otherwise (local, memory) the bytes are served here."
    ),
]


def _redirect(url: str) -> Response:
    # The signed URL is a bearer credential: no shared cache may keep it.
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "private, no-store"})


@router.get("/{image}/original", response_class=Response, responses=_BLOB)
async def get_original(request: Request, image: str, redirect: Redirect = False) -> Response:
    """The original bytes exactly as uploaded."""
    corpus, image = _corpus(request), image_id(image)
    if redirect and (url := await corpus.original_url(image)):
        return _redirect(url)
    return _blob_response(request, await corpus.open_original(image))


@router.head("/{image}/original", response_class=Response, responses=_BLOB)
async def head_original(request: Request, image: str) -> Response:
    """The original's headers (Content-Length, Content-Type, ETag) without its bytes."""
    return await get_original(request, image)


@router.get("/{image}/renditions/{pipeline}", response_class=Response, responses=_BLOB)
async def get_rendition(
    request: Request, image: str, pipeline: str, redirect: Redirect = False
) -> Response:
    """A rendition (e.g. the 224x224 model input as JPEG); for a configured pipeline that
    has none yet, rendered from the original, stored, then served. Rendering writes to
    storage, so it needs the upload or admin scope: a read-only key gets 403
    insufficient_scope for a rendition not stored yet."""
    corpus, image = _corpus(request), image_id(image)
    may_render = holds(request, "upload", "admin")
    if redirect and (url := await corpus.rendition_url(image, pipeline, may_render=may_render)):
        return _redirect(url)
    blob = await corpus.open_rendition(image, pipeline, may_render=may_render)
    return _blob_response(request, blob)


@router.patch("/{image}", response_model=ImageOut, responses={**_ERRORS, 422: {"model": Problem}})
async def patch_image(request: Request, image: str, patch: ImagePatch) -> ImageOut:
    """Set or clear the ground-truth label, replace the tags, or set the description."""
    given = patch.model_fields_set
    changes: dict[str, Any] = {}
    if "label" in given:
        changes["label"] = None if patch.label is None else check_label(patch.label)
    if "tags" in given:
        changes["tags"] = check_tags(patch.tags or [])
    if "description" in given:
        changes["description"] = patch.description
    record = await _corpus(request).update(image_id(image), **changes)
    return image_out(record, _links(request))


@router.head("/{image}/renditions/{pipeline}", response_class=Response, responses=_BLOB)
async def head_rendition(request: Request, image: str, pipeline: str) -> Response:
    """A rendition's headers without its bytes."""
    return await get_rendition(request, image, pipeline)


@router.delete("/{image}", status_code=204, response_class=Response, responses=_ERRORS)
async def delete_image(request: Request, image: str) -> Response:
    """Delete the image's catalog rows and blobs."""
    image = image_id(image)
    await _corpus(request).delete(image)
    request.app.state.similar.removed(image)  # other replicas drop it when a search finds it
    return Response(status_code=204)
