"""Images in the catalog and their lock: record, read, change and delete one image.

Rows of one image change under its lock (`imgest.catalog.locks`), and so do the blob leases
of its paths (`imgest.catalog.leases`): `add_image` and `add_rendition` spend the writer's
write lease in the transaction that records the rows (no storage call inside it: the blobs
were stored before, under the lease), and `delete_image` takes a delete lease on the blobs it
frees, which the caller deletes after the commit. The protocol is argued in
`imgest.storage.once`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from imgest.catalog.leases import Lease, Leases, lease_deletes, spend
from imgest.catalog.locks import lock_images, locked
from imgest.catalog.models import (
    Base,
    EmbeddingRow,
    ImageRow,
    PredictionRow,
    RenditionRow,
    TagRow,
)
from imgest.catalog.records import (
    Additions,
    Applied,
    EmbeddingRecord,
    ImageRecord,
    PredictionRecord,
    RenditionRecord,
)
from imgest.catalog.rows import (
    as_record,
    embedding_values,
    image_row,
    prediction_record,
    prediction_row,
    rendition_row,
    table,
)


class Unset:
    """Marks an update argument that was not given (None means "clear")."""


UNSET = Unset()


@dataclass(frozen=True)
class _Replacements:
    """What a PATCH or `imgest label` replaces; UNSET keeps what is stored."""

    label: str | Unset | None = UNSET  # None clears
    tags: Sequence[str] | Unset = UNSET
    description: str | Unset | None = UNSET  # None clears


class Images(Leases):
    """Image records with their tags, renditions and predictions; rows and blobs of one image
    change under its lock (`locked`)."""

    # -- writes ---------------------------------------------------------------------------
    def add_image(
        self,
        record: ImageRecord,
        lease: Lease | None = None,
        *,
        embeddings: Sequence[EmbeddingRecord] = (),
    ) -> bool:
        """Insert the image with its tags, renditions, predictions and `embeddings` in one
        transaction.

        `lease` (the write lease its blobs were stored under) is spent in the same
        transaction, under the image's lock: LeaseLost, and nothing written, when it is gone.
        Returns False (and writes nothing) when an image with this id is already recorded.
        """
        try:
            with locked(self, record.id) as session:
                session.add(image_row(record))
                session.flush()  # the images row first: a duplicate fails here
                session.add_all(TagRow(image_id=record.id, tag=t) for t in record.tags)
                session.add_all(rendition_row(record.id, r) for r in record.renditions)
                session.add_all(prediction_row(record.id, p) for p in record.predictions)
                session.add_all(EmbeddingRow(**embedding_values(record.id, e)) for e in embeddings)
                session.flush()
                if lease is not None:
                    spend(session, lease)
        except IntegrityError:
            if self._exists(ImageRow.id == record.id):
                return False
            raise
        _spent(lease)
        return True

    def add_prediction(self, image_id: str, prediction: PredictionRecord) -> bool:
        """Record one prediction; False (and nothing written) if (image, model version,
        pipeline version) already has one, so retries and re-runs are harmless."""
        row = prediction_row(image_id, prediction)
        return self._insert_once(row, "image_id", "model_version", "pipeline_version")

    def add_rendition(
        self, image_id: str, rendition: RenditionRecord, lease: Lease | None = None
    ) -> bool:
        """Record one rendition; False if (image, pipeline, pipeline version) has one already.

        Under the image's lock, like `add_image`, spending `lease` (LeaseLost when it is gone).
        """
        row = rendition_row(image_id, rendition)
        key = ("image_id", "pipeline", "pipeline_version")
        try:
            with locked(self, image_id) as session:
                session.add(row)
                session.flush()
                if lease is not None:
                    spend(session, lease)
        except IntegrityError:
            if self._exists(and_(*(getattr(RenditionRow, c) == getattr(row, c) for c in key))):
                return False
            raise  # not a duplicate: e.g. the image row is gone
        _spent(lease)
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

    def delete_image(self, image_id: str, lease: Lease | None = None) -> ImageRecord | None:
        """Remove the image's rows in one transaction; return what was removed.

        With `lease` (a delete lease, filled in here), the same transaction takes a delete
        lease on the removed blobs no live write lease covers (an upload of the same bytes
        in flight keeps its blobs); the caller deletes `lease.paths` after the commit and
        then ends the lease.
        """
        with locked(self, image_id) as session:
            removed = _load(session, image_id)
            if removed is None:
                return None
            for cls in (TagRow, RenditionRow, PredictionRow, EmbeddingRow):
                session.execute(delete(cls).where(cls.image_id == image_id))
            session.execute(delete(ImageRow).where(ImageRow.id == image_id))
            if lease is not None:
                lease_deletes(session, lease, removed.blob_paths(), self.lease_ttl)
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


def _spent(lease: Lease | None) -> None:
    """The transaction that spent `lease` committed: nothing is left to drop."""
    if lease is not None:
        lease.spent = True


def _load(session: Session, image_id: str) -> ImageRecord | None:
    row = session.execute(_IMAGE_BY_ID, {"id": image_id}).first()
    if row is None:
        return None
    return hydrate(session, [row])[0]


def hydrate(session: Session, rows: Sequence[Any]) -> list[ImageRecord]:
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
