"""Response shapes of the HTTP API (they define the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from imgest.labels import MAX_BULK_LABELS


class Link(BaseModel):
    url: str


class RenditionOut(BaseModel):
    width: int
    height: int
    url: str
    pipeline_version: str
    bytes: int
    content_type: str
    source: Literal["original", "intermediate"] = Field(
        default="original",
        description="What it was rendered from: the original, or the image's intermediate "
        "(its stored reduced copy; the `intermediate` entry is that copy itself).",
    )


class LabelOut(BaseModel):
    label: str
    index: int
    score: float


class PredictionOut(BaseModel):
    model: str
    model_version: str
    pipeline: str
    pipeline_version: str
    top: list[LabelOut]
    created_at: datetime


class ErrorOut(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    detail: str = Field(description="A human sentence saying what was wrong.")
    status: int = Field(description="The HTTP status this error has on its own.")


class ImageOut(BaseModel):
    id: str = Field(description="SHA-256 hex of the original bytes.")
    format: str
    content_type: str
    width: int
    height: int
    frames: int
    bytes: int
    filename: str
    created_at: datetime
    fields: dict[str, str | list[str]]
    tags: list[str]
    original: Link
    renditions: dict[str, RenditionOut]
    predictions: list[PredictionOut]
    label: str | None = Field(default=None, description="Ground truth, if a person set it.")


class ImagePatch(BaseModel):
    """PATCH /v1/images/{id}: only the members sent change; null clears label/description."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, description="Ground truth; null clears it.")
    tags: list[str] | None = Field(default=None, description="Replaces the tags.")
    description: str | None = Field(
        default=None, max_length=16 * 1024, description="The `description` field; null clears."
    )


class BulkLabel(BaseModel):
    """PATCH /v1/images: one ground-truth label (null clears it) for many images at once."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(
        min_length=1,
        max_length=MAX_BULK_LABELS,
        description=f"Image ids (1 to {MAX_BULK_LABELS}; repeats count once).",
    )
    label: str | None = Field(description="Ground truth for every image; null clears it.")


class BulkLabelOut(BaseModel):
    """What a bulk label request changed, in one transaction."""

    label: str | None = Field(description="The label every updated image now has.")
    updated: list[str] = Field(description="Ids of the images that now have it.")
    not_found: list[str] = Field(description="Ids sent that no stored image has.")


class AppliedOut(BaseModel):
    """What the upload's tags, label and text fields did to the image (new or stored)."""

    tags_added: list[str] = Field(
        default=[], description="Tags the image did not have yet and now has."
    )
    label: Literal["set", "unchanged", "conflict"] | None = Field(
        default=None,
        description="set: the image had no label and now has this one; unchanged: it had "
        "this label already; conflict: it has another label, which was kept (change it with "
        "PATCH). null: the upload carried no label.",
    )
    fields_set: list[str] = Field(default=[], description="Text fields the image now has.")
    fields_conflict: list[str] = Field(
        default=[], description="Text fields stored with another value, which was kept."
    )


class SimilarOut(BaseModel):
    id: str = Field(description="A stored image's id.")
    score: float = Field(description="Cosine similarity of the embeddings, -1..1 (1: same).")


class UploadItemOut(BaseModel):
    id: str | None = None
    status: Literal["created", "existing", "rejected"]
    filename: str
    content_type: str | None = Field(default=None, description="Content-Type the client sent.")
    format: str | None = Field(default=None, description="Format sniffed from the bytes.")
    width: int | None = None
    height: int | None = None
    bytes: int
    fields: dict[str, str | list[str]] = {}
    tags: list[str] = []
    original: Link | None = None
    renditions: dict[str, RenditionOut] = {}
    predictions: list[PredictionOut] = []
    label: str | None = None
    applied: AppliedOut | None = Field(
        default=None,
        description="What this upload's metadata did (absent for rejected files). An upload "
        "of bytes already stored merges its tags in and sets the label and fields only where "
        "the image has none.",
    )
    near_duplicates: list[SimilarOut] = Field(
        default=[],
        description="Images already stored whose embedding is at least "
        "IMGEST_NEAR_DUPLICATE_THRESHOLD similar to this file's, best first (at most "
        "IMGEST_NEAR_DUPLICATES_MAX); empty with IMGEST_NEAR_DUPLICATES=off and for files "
        "already stored. With `reject`, a file that has some is rejected (near_duplicate).",
    )
    error: ErrorOut | None = None


class UploadOut(BaseModel):
    images: list[UploadItemOut]


class SimilarPage(BaseModel):
    model: str = Field(description="The model whose embeddings were compared.")
    model_version: str
    items: list[SimilarOut] = Field(description="Most similar first.")


class ImagePage(BaseModel):
    items: list[ImageOut]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= for the next page.")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    instance: str | None = None
    images: list[UploadItemOut] | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


class Ready(Health):
    counters: dict[str, int] | None = Field(
        default=None,
        description="Work done by this process since start-up (files ingested, renders, "
        "images created, idempotent replays); present only for callers the readyz_counters "
        "setting allows.",
    )
