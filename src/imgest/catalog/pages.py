"""Pages of images for the API's list and the gallery: newest first, or by confidence (the
top-1 score of each image's latest prediction), keyset-paginated either way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, exists, literal, or_, select, tuple_
from sqlalchemy.orm import aliased

from imgest.catalog.filters import ImageFilter, filtered
from imgest.catalog.images import hydrate
from imgest.catalog.models import ImageRow, PredictionRow
from imgest.catalog.records import ImageRecord
from imgest.catalog.session import Database
from imgest.params import (
    decode_cursor,
    decode_score_cursor,
    encode_cursor,
    encode_score_cursor,
)

# Orders of a list page: upload time, or the confidence of the latest prediction (images
# without a prediction come last when the most confident come first, and first otherwise).
Sort = Literal["newest", "most_confident", "least_confident"]
SORTS: tuple[Sort, ...] = ("newest", "most_confident", "least_confident")
_NO_SCORE = -1.0  # the sort key of an image without a prediction


@dataclass(frozen=True)
class Page:
    """One page of images and the cursor of the next page (None at the end)."""

    items: list[ImageRecord]
    next_cursor: str | None


class ImagePages(Database):
    """List pages of the images a filter selects, in one of SORTS."""

    def list_images(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        where: ImageFilter | None = None,
        sort: Sort = "newest",
    ) -> Page:
        """One page in `sort` order, keyset-paginated on (created_at, id) or (confidence, id)."""
        if sort == "newest":
            return self._newest(limit, cursor, where)
        down = sort == "most_confident"
        position = decode_score_cursor(cursor, sort) if cursor else None
        # Two segments in page order: the images with a prediction, by their latest top-1
        # score (a walk down the predictions' score index, so a page costs about its own
        # rows, not the corpus), and those without one (by id), after them or before.
        segments = ["scored", "unscored"] if down else ["unscored", "scored"]
        if position is not None:
            segments = segments[segments.index(_segment(position[0])) :]
        rows: list[tuple[Any, float]] = []
        with self.reading() as session:
            for segment in segments:
                after = position if position and _segment(position[0]) == segment else None
                query = (
                    _scored(where, down, after)
                    if segment == "scored"
                    else _unscored(where, down, after)
                )
                found = session.execute(query.limit(limit + 1 - len(rows)))
                rows += [(r[0], float(r[1])) for r in found]
                if len(rows) > limit:
                    break
            more = len(rows) > limit
            rows = rows[:limit]
            items = hydrate(session, [r[0] for r in rows])
        next_cursor = None
        if more and rows:
            next_cursor = encode_score_cursor(sort, rows[-1][1], rows[-1][0].id)
        return Page(items=items, next_cursor=next_cursor)

    def _newest(self, limit: int, cursor: str | None, where: ImageFilter | None) -> Page:
        """Newest first, keyset-paginated on (created_at, id)."""
        after = decode_cursor(cursor) if cursor else None
        query = filtered(select(ImageRow), where)
        if after is not None:
            stamp = after[0]
            query = query.where(
                or_(
                    ImageRow.created_at < stamp,
                    and_(ImageRow.created_at == stamp, ImageRow.id < after[1]),
                )
            )
        query = query.order_by(ImageRow.created_at.desc(), ImageRow.id.desc()).limit(limit + 1)
        with self.reading() as session:
            rows = list(session.execute(query).scalars())
            more = len(rows) > limit
            rows = rows[:limit]
            items = hydrate(session, rows)
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return Page(items=items, next_cursor=next_cursor)


def _segment(score: float) -> str:
    return "unscored" if score == _NO_SCORE else "scored"


def _scored(where: ImageFilter | None, down: bool, after: tuple[float, str] | None) -> Any:
    """Images with a prediction and the top-1 score of their latest one, in score order."""
    latest, newer = aliased(PredictionRow), aliased(PredictionRow)
    key = (latest.top1_score, latest.image_id)
    query = (
        select(ImageRow, latest.top1_score)
        .join(latest, latest.image_id == ImageRow.id)
        .where(~exists().where(newer.image_id == latest.image_id, newer.id > latest.id))
    )
    query = filtered(query, where)
    if after is not None:
        query = query.where(
            tuple_(*key) < tuple_(*after) if down else tuple_(*key) > tuple_(*after)
        )
    return query.order_by(*(k.desc() if down else k.asc() for k in key))


def _unscored(where: ImageFilter | None, down: bool, after: tuple[float, str] | None) -> Any:
    """Images without a prediction (sort key _NO_SCORE), in id order."""
    query = filtered(select(ImageRow, literal(_NO_SCORE)), where)
    query = query.where(~exists().where(PredictionRow.image_id == ImageRow.id))
    if after is not None:
        query = query.where(ImageRow.id < after[1] if down else ImageRow.id > after[1])
    return query.order_by(ImageRow.id.desc() if down else ImageRow.id.asc())
