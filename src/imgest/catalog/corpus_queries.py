"""Catalog queries of the corpus jobs (rescore, compare, export): keyset pages over the images
a filter selects, the predictions of runs, and their results written in bulk."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, select
from sqlalchemy.orm import Session, aliased

from imgest.catalog.filters import ImageFilter, filtered, is_done
from imgest.catalog.leases import Lease, Leases, spend
from imgest.catalog.locks import lock_paths
from imgest.catalog.models import Base, EmbeddingRow, ImageRow, PredictionRow, RenditionRow
from imgest.catalog.records import (
    EmbeddingRecord,
    PendingImage,
    PredictionKey,
    PredictionPair,
    PredictionRecord,
    PredictionRun,
    RenditionRecord,
)
from imgest.catalog.rows import embedding_values, prediction_record, prediction_values, table
from imgest.storage.paths import INTERMEDIATE

T = TypeVar("T")


class CorpusQueries(Leases):
    """What a corpus job reads of the images and predictions, and how it writes its results."""

    def count_images(self, where: ImageFilter | None = None) -> int:
        """How many images `where` selects."""
        return self._count(filtered(select(func.count()).select_from(ImageRow), where))

    def count_pending(
        self, key: PredictionKey, where: ImageFilter | None = None, *, embedded: bool = False
    ) -> int:
        """How many images `where` selects lack the `key` prediction (or, `embedded`, the
        model version's embedding)."""
        query = filtered(select(func.count()).select_from(ImageRow), where)
        return self._count(query.where(~is_done(key, embedded)))

    def _count(self, query: Select[Any]) -> int:
        with self.reading() as session:
            return int(session.execute(query).scalar_one())

    def image_pages(
        self,
        pipeline: str,
        pipeline_version: str,
        *,
        where: ImageFilter | None = None,
        lacking: PredictionKey | None = None,
        embedded: bool = False,
        limit: int = 500,
        intermediate: str | None = None,
    ) -> Iterator[list[PendingImage]]:
        """The images `where` selects in keyset pages (by id) of `limit`, each with the path of
        its stored `pipeline`@`pipeline_version` rendition if any (and its intermediate
        rendition of version `intermediate`, when given); only those without the `lacking`
        prediction (or, `embedded`, its model version's embedding) when given."""
        rendition = aliased(RenditionRow)
        inter = aliased(RenditionRow)
        columns = select(
            ImageRow.id,
            ImageRow.original_path,
            rendition.path,
            ImageRow.label,
            ImageRow.width,
            ImageRow.height,
            *(inter.path, inter.width, inter.height, inter.bytes),
            ImageRow.format,
        )
        query = filtered(columns, where).outerjoin(
            rendition,
            _of_image(rendition, pipeline=pipeline, pipeline_version=pipeline_version),
        )
        # An impossible version when none is asked for: the join finds nothing.
        query = query.outerjoin(
            inter,
            _of_image(inter, pipeline=INTERMEDIATE, pipeline_version=intermediate or "/"),
        )
        if lacking is not None:
            query = query.where(~is_done(lacking, embedded))
        return self._id_pages(query, limit, _pending)

    def top1_predictions(
        self, image_ids: Sequence[str], model_version: str, pipeline_version: str
    ) -> dict[str, PredictionRecord]:
        """image id -> its prediction by `model_version`: through `pipeline_version` if there
        is one, else the newest through any pipeline."""
        query = (
            select(PredictionRow)
            .where(
                PredictionRow.image_id.in_(list(image_ids)),
                PredictionRow.model_version == model_version,
            )
            .order_by(PredictionRow.id)
        )
        found: dict[str, PredictionRecord] = {}
        with self.reading() as session:
            for row in session.execute(query).scalars():
                have = found.get(row.image_id)
                if have is None or have.pipeline_version != pipeline_version:
                    found[row.image_id] = prediction_record(row)
        return found

    def add_results(
        self,
        results: Sequence[tuple[str, PredictionRecord, RenditionRecord | None]],
        lease: Lease | None = None,
        embeddings: Sequence[tuple[str, EmbeddingRecord]] = (),
    ) -> int:
        """Record (image id, prediction, new rendition or None) triples, and (image id,
        embedding) pairs, in one transaction.

        Idempotent: a prediction, rendition or embedding already recorded under its key is
        left as it is. Returns how many images got something new (a prediction or an
        embedding). `lease` (the write lease the new renditions were stored under) is spent
        under their images' locks: a rendition whose lease is gone (a deleter found it stale,
        so its blob may be gone) is left out; its prediction is still recorded.
        """
        if not results and not embeddings:
            return 0
        predictions = [prediction_values(i, p) for i, p, _ in results]
        renditions = [
            {**dataclasses.asdict(r), "image_id": i} for i, _, r in results if r is not None
        ]
        with self.writing() as session:
            if lease is not None:
                lock_paths(session, lease.paths)
                held = spend(session, lease, partial=True)
                renditions = [r for r in renditions if r["path"] in held]
            _insert_new(session, RenditionRow, renditions)
            new = _insert_new(session, PredictionRow, predictions)
            vectors = [embedding_values(i, e) for i, e in embeddings]
            new |= _insert_new(session, EmbeddingRow, vectors)
        if lease is not None:
            lease.spent = True
        return len(new)

    def add_renditions(
        self, results: Sequence[tuple[str, RenditionRecord]], lease: Lease | None = None
    ) -> int:
        """Record (image id, rendition) pairs in one transaction; how many were new.

        Idempotent like `add_results`; `lease` (the write lease the renditions were stored
        under) is spent likewise, under their images' locks: a rendition whose lease is gone
        is left out.
        """
        rows = [{**dataclasses.asdict(r), "image_id": i} for i, r in results]
        if not rows:
            return 0
        with self.writing() as session:
            if lease is not None:
                lock_paths(session, lease.paths)
                held = spend(session, lease, partial=True)
                rows = [r for r in rows if r["path"] in held]
            new = _insert_new(session, RenditionRow, rows)
        if lease is not None:
            lease.spent = True
        return len(new)

    def prediction_runs(self, model: str, pipeline: str) -> list[PredictionRun]:
        """Every (model version, pipeline version) of these names with predictions, newest
        first (by its latest prediction)."""
        key = (
            PredictionRow.model,
            PredictionRow.model_version,
            PredictionRow.pipeline,
            PredictionRow.pipeline_version,
        )
        query = (
            select(*key, func.count(), func.max(PredictionRow.created_at))
            .where(PredictionRow.model == model, PredictionRow.pipeline == pipeline)
            .group_by(*key)
        )
        with self.reading() as session:
            runs = [
                PredictionRun(PredictionKey(*row[:4]), int(row[4]), row[5])
                for row in session.execute(query)
            ]
        return sorted(runs, key=lambda r: r.latest, reverse=True)

    def paired_predictions(
        self,
        a: PredictionKey,
        b: PredictionKey,
        *,
        where: ImageFilter | None = None,
        limit: int = 1000,
    ) -> Iterator[list[PredictionPair]]:
        """Images `where` selects that have both predictions, in keyset pages (by id) of `limit`."""
        pa, pb = aliased(PredictionRow), aliased(PredictionRow)
        query = filtered(
            select(
                ImageRow.id,
                ImageRow.label,
                pa.top1_label,
                pa.top1_score,
                pb.top1_label,
                pb.top1_score,
            ),
            where,
        )
        for alias, key in ((pa, a), (pb, b)):
            query = query.join(
                alias,
                _of_image(
                    alias, model_version=key.model_version, pipeline_version=key.pipeline_version
                ),
            )
        return self._id_pages(query, limit, PredictionPair)

    def _id_pages(
        self, query: Select[*tuple[Any, ...]], limit: int, make: Callable[..., T]
    ) -> Iterator[list[T]]:
        """`query` (over ImageRow, ImageRow.id its first column) in keyset pages by image id,
        each row made into `make(*row)`. Each page is read in a short session of its own: none
        is held open while the caller works on a page."""
        after: str | None = None
        while True:
            page = query if after is None else query.where(ImageRow.id > after)
            with self.reading() as session:
                rows = session.execute(page.order_by(ImageRow.id).limit(limit)).all()
            if not rows:
                return
            after = rows[-1][0]
            yield [make(*row) for row in rows]

    def rendition_paths(
        self, image_ids: Sequence[str], pipeline: str, version: str
    ) -> dict[str, str]:
        """image id -> path of its stored `pipeline`@`version` rendition, where one exists."""
        query = select(RenditionRow.image_id, RenditionRow.path).where(
            RenditionRow.image_id.in_(list(image_ids)),
            RenditionRow.pipeline == pipeline,
            RenditionRow.pipeline_version == version,
        )
        with self.reading() as session:
            return {image_id: path for image_id, path in session.execute(query)}


def _of_image(alias: Any, **equal: str) -> ColumnElement[bool]:
    """The join condition of `alias` (a table with an image_id) on the query's ImageRow, for
    its rows whose columns hold these values."""
    return and_(alias.image_id == ImageRow.id, *(getattr(alias, c) == v for c, v in equal.items()))


def _insert_new(session: Session, cls: type[Base], rows: list[dict[str, Any]]) -> set[str]:
    """INSERT rows, skipping those whose key is already there; returns the image ids of the
    rows inserted."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:  # pragma: no cover - the catalog runs on SQLite or PostgreSQL
        raise NotImplementedError(f"idempotent insert on {dialect}")
    # One cached statement run for many rows (SQLAlchemy's "insertmanyvalues"), not a
    # multi-VALUES statement compiled anew per call; RETURNING counts the rows inserted.
    target = table(cls)
    statement = insert(target).on_conflict_do_nothing().returning(target.c.image_id)
    return set(session.execute(statement, rows).scalars())


def _pending(
    image_id: str,
    original_path: str,
    rendition_path: str | None,
    label: str | None,
    width: int,
    height: int,
    inter_path: str | None,
    inter_width: int | None,
    inter_height: int | None,
    inter_bytes: int | None,
    format: str,
) -> PendingImage:
    """A PendingImage from one row of `image_pages`' query."""
    intermediate = None
    if inter_path is not None:
        assert inter_width is not None and inter_height is not None and inter_bytes is not None
        intermediate = RenditionRecord(
            pipeline=INTERMEDIATE,
            pipeline_version="",
            path=inter_path,
            width=inter_width,
            height=inter_height,
            content_type="image/jpeg",
            bytes=inter_bytes,
        )
    return PendingImage(
        image_id, original_path, rendition_path, label, width, height, intermediate, format
    )
