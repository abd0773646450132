"""Images in the catalog and their lock: record, read, list, change and delete one image.

Blobs and rows of one image change together under the image's lock (a transaction-scoped
PostgreSQL advisory lock on its id; SQLite's database write lock): `add_image` checks the
blobs are there before it commits, `delete_image` (and gc's `release_orphans`) remove blobs
before they commit. So a blob is never removed between an upload's check and its commit, and
a committed row never points at a blob removed under it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from imgest.catalog.filters import ImageFilter, filtered
from imgest.catalog.models import Base, ImageRow, PredictionRow, RenditionRow, TagRow
from imgest.catalog.records import (
    Additions,
    Applied,
    ImageRecord,
    PredictionRecord,
    RenditionRecord,
)
from imgest.catalog.rows import (
    as_record,
    image_row,
    prediction_record,
    prediction_row,
    rendition_row,
    table,
)
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


class Unset:
    """Marks an update argument that was not given (None means "clear")."""


UNSET = Unset()


@dataclass(frozen=True)
class _Replacements:
    """What a PATCH or `imgest label` replaces; UNSET keeps what is stored."""

    label: str | Unset | None = UNSET  # None clears
    tags: Sequence[str] | Unset = UNSET
    description: str | Unset | None = UNSET  # None clears


@dataclass(frozen=True)
class Page:
    """One page of images and the cursor of the next page (None at the end)."""

    items: list[ImageRecord]
    next_cursor: str | None


def lock_key(image_id: str) -> int:
    """A signed 64-bit key for PostgreSQL advisory locks on one image id."""
    return int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "big", signed=True)


@contextmanager
def locked(db: Database, image_id: str) -> Iterator[Session]:
    """A transaction of `db` that holds `image_id`'s lock from its start until it ends."""
    with db.writing() as session:
        lock_images(session, [image_id])
        yield session


def lock_images(session: Session, image_ids: Sequence[str]) -> None:
    """Take the locks of `image_ids` in `session`'s transaction (held until it ends), in one
    order (sorted) so that two transactions locking several images cannot deadlock."""
    if session.get_bind().dialect.name == "postgresql":
        for image_id in sorted(set(image_ids)):
            session.execute(select(func.pg_advisory_xact_lock(lock_key(image_id))))
    elif image_ids:
        # SQLite: any write statement takes the database write lock, rows or not.
        first = min(image_ids)
        session.execute(update(ImageRow).where(ImageRow.id == first).values(id=ImageRow.id))


class Images(Database):
    """Image records with their tags, renditions and predictions; rows and blobs of one image
    change under its lock (`locked`)."""

    # -- writes ---------------------------------------------------------------------------
    def add_image(self, record: ImageRecord, verify: Callable[[], object] | None = None) -> bool:
        """Insert the image with its tags, renditions and predictions in one transaction.

        `verify` runs under the image's lock before the commit; it makes sure the record's
        blobs are stored (and raises, rolling everything back, when it cannot).
        Returns False (and writes nothing) when an image with this id is already recorded.
        """
        try:
            with locked(self, record.id) as session:
                session.add(image_row(record))
                session.flush()  # the images row first: a duplicate fails here
                session.add_all(TagRow(image_id=record.id, tag=t) for t in record.tags)
                session.add_all(rendition_row(record.id, r) for r in record.renditions)
                session.add_all(prediction_row(record.id, p) for p in record.predictions)
                session.flush()
                if verify is not None:
                    verify()
        except IntegrityError:
            if self._exists(ImageRow.id == record.id):
                return False
            raise
        return True

    def add_prediction(self, image_id: str, prediction: PredictionRecord) -> bool:
        """Record one prediction; False (and nothing written) if (image, model version,
        pipeline version) already has one, so retries and re-runs are harmless."""
        row = prediction_row(image_id, prediction)
        return self._insert_once(row, "image_id", "model_version", "pipeline_version")

    def add_rendition(
        self, image_id: str, rendition: RenditionRecord, verify: Callable[[], object] | None = None
    ) -> bool:
        """Record one rendition; False if (image, pipeline, pipeline version) has one already.

        Under the image's lock, like `add_image`: `verify` runs before the commit and makes
        sure the rendition's blob is stored (gc removes blobs under the same lock).
        """
        row = rendition_row(image_id, rendition)
        key = ("image_id", "pipeline", "pipeline_version")
        try:
            with locked(self, image_id) as session:
                session.add(row)
                session.flush()
                if verify is not None:
                    verify()
        except IntegrityError:
            if self._exists(and_(*(getattr(RenditionRow, c) == getattr(row, c) for c in key))):
                return False
            raise  # not a duplicate: e.g. the image row is gone
        return True

    def _insert_once(self, row: Base, *key: str) -> bool:
        """Insert `row`; False if a row with its values of the `key` columns is there."""
        try:
            with self.writing() as session:
                session.add(row)
        except IntegrityError:
            cls = type(row)
            if self._exists(and_(*(getattr(cls, c) == getattr(row, c) for c in key))):
                return False
            raise  # not a duplicate: e.g. the image row is gone
        return True

    def _exists(self, condition: Any) -> bool:
        with self.reading() as session:
            return bool(session.execute(select(exists().where(condition))).scalar_one())

    def update_image(
        self,
        image_id: str,
        *,
        label: str | Unset | None = UNSET,
        tags: Sequence[str] | Unset = UNSET,
        description: str | Unset | None = UNSET,
    ) -> ImageRecord | None:
        """Set the ground-truth label (None clears), replace the tags, or set/clear the
        `description` field, in one transaction; the updated record, or None if absent."""
        changed = self._change(image_id, replace=_Replacements(label, tags, description))
        return None if changed is None else changed[0]

    def add_metadata(self, image_id: str, add: Additions) -> tuple[ImageRecord, Applied] | None:
        """Merge an upload's tags, label and fields into a stored image (see `Additions`),
        under the image's lock; the updated record and what was applied, or None if absent."""
        return self._change(image_id, add=add)

    def _change(
        self, image_id: str, *, replace: _Replacements | None = None, add: Additions | None = None
    ) -> tuple[ImageRecord, Applied] | None:
        """The one write path of an image's metadata (PATCH, `imgest label`, uploads of
        stored bytes): replacements first, then additions merged into the result."""
        with locked(self, image_id) as session:
            row = session.get(ImageRow, image_id, with_for_update=True)
            if row is None:
                return None
            fields = dict(row.fields)
            if replace is not None:
                if not isinstance(replace.label, Unset):
                    row.label = replace.label
                if not isinstance(replace.description, Unset):
                    if replace.description is None:
                        fields.pop("description", None)
                    else:
                        fields["description"] = replace.description
                if not isinstance(replace.tags, Unset):
                    session.execute(delete(TagRow).where(TagRow.image_id == image_id))
                    new = dict.fromkeys(replace.tags)
                    session.add_all(TagRow(image_id=image_id, tag=t) for t in new)
                session.flush()
            applied = Applied()
            if add:
                current = _load(session, image_id)
                assert current is not None
                applied = add.applied_to(current)
                session.add_all(TagRow(image_id=image_id, tag=t) for t in applied.tags_added)
                if applied.label == "set":
                    row.label = add.label
                fields.update({n: add.fields[n] for n in applied.fields_set})
            if fields != row.fields:
                row.fields = fields
            session.flush()
            changed = _load(session, image_id)
            assert changed is not None
            return changed, applied

    def delete_image(
        self, image_id: str, release: Callable[[ImageRecord], None] | None = None
    ) -> ImageRecord | None:
        """Remove the image's rows in one transaction; return what was removed.

        `release` (given the removed record) runs under the image's lock before the commit:
        it removes the blobs, so an upload of the same bytes racing this delete either
        finds the row or stores its blobs again before it records its own row.
        """
        with locked(self, image_id) as session:
            removed = _load(session, image_id)
            if removed is None:
                return None
            for cls in (TagRow, RenditionRow, PredictionRow):
                session.execute(delete(cls).where(cls.image_id == image_id))
            session.execute(delete(ImageRow).where(ImageRow.id == image_id))
            if release is not None:
                release(removed)
            return removed

    # -- reads ----------------------------------------------------------------------------
    def get_image(self, image_id: str) -> ImageRecord | None:
        """The image with everything derived from it, or None."""
        with self.reading() as session:
            return _load(session, image_id)

    def predictions_for(self, image_id: str) -> list[PredictionRecord]:
        """Every prediction of the image, oldest first (empty if none or no such image)."""
        query = (
            select(PredictionRow)
            .where(PredictionRow.image_id == image_id)
            .order_by(PredictionRow.id)
        )
        with self.reading() as session:
            return [prediction_record(p) for p in session.execute(query).scalars()]

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
            items = _hydrate(session, [r[0] for r in rows])
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
            items = _hydrate(session, rows)
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return Page(items=items, next_cursor=next_cursor)

    def set_labels(self, image_ids: Sequence[str], label: str | None) -> list[str]:
        """Set (None: clear) the ground truth of every image in `image_ids` in one transaction,
        under their locks; the ids that exist (and now have it), in the order given."""
        wanted = list(dict.fromkeys(image_ids))
        if not wanted:
            return []
        with self.writing() as session:
            lock_images(session, wanted)
            found = set(
                session.execute(select(ImageRow.id).where(ImageRow.id.in_(wanted))).scalars()
            )
            if found:
                session.execute(
                    update(ImageRow).where(ImageRow.id.in_(sorted(found))).values(label=label)
                )
        return [i for i in wanted if i in found]


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


# Built once: every duplicate upload and image GET loads a record through these. Plain
# rows, not ORM objects: building ORM instances (and the statements) was most of the time.
_IMAGES, _TAGS, _RENDITIONS, _PREDICTIONS = (
    table(c) for c in (ImageRow, TagRow, RenditionRow, PredictionRow)
)
_IMAGE_BY_ID = select(_IMAGES).where(_IMAGES.c.id == bindparam("id"))
_TAGS_OF = (
    select(_TAGS.c.image_id, _TAGS.c.tag)
    .where(_TAGS.c.image_id.in_(bindparam("ids", expanding=True)))
    .order_by(_TAGS.c.tag)
)
_RENDITIONS_OF = select(_RENDITIONS).where(
    _RENDITIONS.c.image_id.in_(bindparam("ids", expanding=True))
)
_PREDICTIONS_OF = (
    select(_PREDICTIONS)
    .where(_PREDICTIONS.c.image_id.in_(bindparam("ids", expanding=True)))
    .order_by(_PREDICTIONS.c.id)
)


def _load(session: Session, image_id: str) -> ImageRecord | None:
    row = session.execute(_IMAGE_BY_ID, {"id": image_id}).first()
    if row is None:
        return None
    return _hydrate(session, [row])[0]


def _hydrate(session: Session, rows: Sequence[Any]) -> list[ImageRecord]:
    """ImageRecords of image rows (ORM objects or plain rows) with their tags, renditions and
    predictions: one query for each of the three."""
    ids = {"ids": [r.id for r in rows]}
    if not ids["ids"]:
        return []
    tags: dict[str, list[str]] = {}
    for t in session.execute(_TAGS_OF, ids):
        tags.setdefault(t.image_id, []).append(t.tag)
    rends: dict[str, list[RenditionRecord]] = {}
    for r in session.execute(_RENDITIONS_OF, ids):
        rends.setdefault(r.image_id, []).append(as_record(RenditionRecord, r))
    preds: dict[str, list[PredictionRecord]] = {}
    for p in session.execute(_PREDICTIONS_OF, ids):
        preds.setdefault(p.image_id, []).append(prediction_record(p))
    return [
        as_record(
            ImageRecord,
            r,
            fields=dict(r.fields),
            tags=tuple(tags.get(r.id, ())),
            renditions=tuple(rends.get(r.id, ())),
            predictions=tuple(preds.get(r.id, ())),
        )
        for r in rows
    ]
