"""Between records and table rows: the rows a record is stored as, the record a row reads as."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, cast

from sqlalchemy import Table

from imgest.catalog.models import Base, ImageRow, PredictionRow, RenditionRow
from imgest.catalog.records import (
    EmbeddingRecord,
    ImageRecord,
    Label,
    PredictionRecord,
    RenditionRecord,
)

R = TypeVar("R")


def table(cls: type[Base]) -> Table:
    """The Core table behind an ORM class (selecting from it yields plain rows)."""
    return cast(Table, cls.__table__)


def as_record(cls: type[R], row: object, **computed: Any) -> R:
    """A record dataclass from the row's same-named columns, plus computed fields."""
    names = [f.name for f in dataclasses.fields(cls) if f.name not in computed]  # type: ignore[arg-type]
    return cls(**{n: getattr(row, n) for n in names}, **computed)


def _row(cls: type[R], record: object, **computed: Any) -> R:
    """A table row from the record's same-named fields, plus computed columns."""
    columns = cls.__table__.columns.keys()  # type: ignore[attr-defined]
    values = {c: getattr(record, c) for c in columns if c not in computed and hasattr(record, c)}
    return cls(**values, **computed)


def image_row(record: ImageRecord) -> ImageRow:
    """The images row of `record` (its tags, renditions and predictions have rows of their own)."""
    return _row(ImageRow, record, fields=dict(record.fields))


def rendition_row(image_id: str, r: RenditionRecord) -> RenditionRow:
    """The renditions row of `r`."""
    return _row(RenditionRow, r, image_id=image_id)


def prediction_values(image_id: str, p: PredictionRecord) -> dict[str, Any]:
    """The predictions table's column values for one record (no ORM object: bulk inserts)."""
    return {
        "image_id": image_id,
        "model": p.model,
        "model_version": p.model_version,
        "pipeline": p.pipeline,
        "pipeline_version": p.pipeline_version,
        "top": [dataclasses.asdict(x) for x in p.top],
        "top1_label": p.top[0].label if p.top else "",
        "top1_score": p.top[0].score if p.top else 0.0,
        "created_at": p.created_at,
    }


def prediction_row(image_id: str, p: PredictionRecord) -> PredictionRow:
    """The predictions row of `p`."""
    return PredictionRow(**prediction_values(image_id, p))


def prediction_record(row: Any) -> PredictionRecord:
    """The record of a predictions row (an ORM object or a plain row)."""
    return as_record(PredictionRecord, row, top=tuple(Label(**item) for item in row.top))


def embedding_values(image_id: str, e: EmbeddingRecord) -> dict[str, Any]:
    """The embeddings table's column values for one record (bulk inserts)."""
    return {"image_id": image_id, **dataclasses.asdict(e)}
