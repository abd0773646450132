"""What list pages and corpus jobs narrow the images to, as a value and as SQL; the image's
confidence (its latest prediction's top-1 score), which pages may also be sorted by."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Exists,
    ScalarSelect,
    Select,
    and_,
    exists,
    func,
    literal,
    or_,
    select,
)

from imgest.catalog.models import EmbeddingRow, ImageRow, PredictionRow, TagRow
from imgest.catalog.records import PredictionKey
from imgest.errors import InvalidParameter
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
    # Confidence: the top-1 score of the image's latest prediction (no prediction: no match).
    min_confidence: float | None = None  # confidence >= min_confidence
    max_confidence: float | None = None  # confidence <= max_confidence
    # Ground truth is set and the latest prediction's top-1 does not name it (`agrees`).
    disagrees: bool = False
    ids: frozenset[str] | None = None  # only these images (a near-duplicate group)

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
        for name in ("min_confidence", "max_confidence"):
            score = getattr(self, name)
            if score is not None and not (math.isfinite(score) and 0.0 <= score <= 1.0):
                raise InvalidParameter(f"{name} is a score from 0 to 1, not {score}.")
        low, high = self.min_confidence, self.max_confidence
        if low is not None and high is not None and low > high:
            raise InvalidParameter("min_confidence is above max_confidence: nothing matches.")


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
    if where.min_confidence is not None:
        query = query.where(confidence() >= where.min_confidence)
    if where.max_confidence is not None:
        query = query.where(confidence() <= where.max_confidence)
    if where.disagrees:
        top1 = latest_prediction(PredictionRow.top1_label)
        query = query.where(ImageRow.label.is_not(None), top1.is_not(None))
        query = query.where(~agrees(ImageRow.label, top1))
    if where.ids is not None:
        query = query.where(ImageRow.id.in_(sorted(where.ids)))
    return query


def latest_prediction(column: Any) -> ScalarSelect[Any]:
    """`column` of the image's latest prediction (NULL when it has none): the prediction the
    gallery shows, whose top-1 is the image's confidence and what disagreement compares."""
    return (
        select(column)
        .where(PredictionRow.image_id == ImageRow.id)
        .order_by(PredictionRow.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def confidence() -> ScalarSelect[Any]:
    """The image's confidence: the top-1 score of its latest prediction (NULL without one)."""
    return latest_prediction(PredictionRow.top1_score)


def agrees(truth: Any, top1: Any) -> ColumnElement[bool]:
    """SQL for `compare.label_matches`: ground truth names the predicted class when it equals
    the class name or one of its comma-separated synonyms ("tabby cat" and "tabby, tabby
    cat"), ignoring case (ASCII case on SQLite, whose lower() knows no other)."""
    want = func.lower(truth)
    names = literal(",") + func.replace(func.lower(top1), ", ", ",") + literal(",")
    pattern = literal("%,") + _escaped(want) + literal(",%")
    return or_(func.lower(top1) == want, names.like(pattern, escape="\\"))


def _escaped(text: Any) -> Any:
    """SQL text with LIKE's wildcards escaped (as `escape_like` does in Python)."""
    for char in ("\\", "%", "_"):
        text = func.replace(text, char, "\\" + char)
    return text


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
