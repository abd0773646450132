"""What list pages and corpus jobs narrow the images to, as a value and as SQL."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Exists, Select, and_, exists, func

from imgest.catalog.models import EmbeddingRow, ImageRow, PredictionRow, TagRow
from imgest.catalog.records import PredictionKey
from imgest.params import filter_text, utc

Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class ImageFilter:
    """What `list_images` narrows the corpus to."""

    label: str | None = None  # top-1 predicted label of any prediction
    # Case-insensitive part of the top-1 label of any prediction ("cat" finds "tiger cat").
    label_contains: str | None = None
    tag: str | None = None
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until

    def __post_init__(self) -> None:
        # Client values, checked once here (API, UI and CLI build filters): times become UTC
        # now, so that one with no UTC equivalent is a 422, not an OverflowError in a query.
        # Every member, whatever its name: a text member added later is checked too (the
        # gallery's label_contains once reached PostgreSQL with a NUL: 503 for a bad value).
        for member in dataclasses.fields(self):
            value = getattr(self, member.name)
            if isinstance(value, str):
                filter_text(value, member.name)
            elif isinstance(value, datetime):
                object.__setattr__(self, member.name, utc(value, member.name))


def filtered(query: Q, where: ImageFilter | None) -> Q:
    """`query` (over ImageRow) narrowed to the images `where` selects (all when None)."""
    if where is None:
        return query
    if where.tag is not None:
        query = query.where(
            exists().where(and_(TagRow.image_id == ImageRow.id, TagRow.tag == where.tag))
        )
    if where.label is not None:
        query = query.where(_predicted(PredictionRow.top1_label == where.label))
    if where.label_contains is not None:
        # LIKE on lower(): in SQL on SQLite and PostgreSQL, and the EXISTS probes predictions
        # by image id, so a page of matches costs one index lookup per image row it passes.
        pattern = "%" + escape_like(where.label_contains.lower()) + "%"
        query = query.where(
            _predicted(func.lower(PredictionRow.top1_label).like(pattern, escape="\\"))
        )
    if where.since is not None:
        query = query.where(ImageRow.created_at >= where.since)
    if where.until is not None:
        query = query.where(ImageRow.created_at < where.until)
    return query


def has_prediction(key: PredictionKey) -> Exists:
    """Whether the image (ImageRow of the enclosing query) has the `key` prediction."""
    return _predicted(
        PredictionRow.model_version == key.model_version,
        PredictionRow.pipeline_version == key.pipeline_version,
    )


def has_embedding(model_version: str) -> Exists:
    """Whether the image (ImageRow of the enclosing query) has an embedding by that version."""
    return exists().where(
        and_(EmbeddingRow.image_id == ImageRow.id, EmbeddingRow.model_version == model_version)
    )


def is_done(key: PredictionKey, embedded: bool = False) -> ColumnElement[bool]:
    """Whether a run has nothing left to do for the image: it has the `key` prediction, and
    (`embedded`: the model has an embedding output) the model version's embedding."""
    if not embedded:
        return has_prediction(key)
    return and_(has_prediction(key), has_embedding(key.model_version))


def _predicted(*conditions: Any) -> Exists:
    """Whether some prediction of the image meets all `conditions`."""
    return exists().where(and_(PredictionRow.image_id == ImageRow.id, *conditions))


def escape_like(text: str) -> str:
    """`text` with LIKE's wildcards (and the escape character, a backslash) escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
