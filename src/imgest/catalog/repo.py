"""Catalog queries: record an image in one transaction, read, list with keyset pages, delete."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Engine,
    Exists,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, aliased, sessionmaker

from imgest.catalog.db import CatalogOptions, make_engine, migrate
from imgest.catalog.models import Base, ImageRow, PredictionRow, RenditionRow, TagRow
from imgest.catalog.records import (
    Additions,
    Applied,
    ImageRecord,
    Label,
    PendingImage,
    PredictionKey,
    PredictionPair,
    PredictionRecord,
    PredictionRun,
    RenditionRecord,
)
from imgest.errors import CatalogUnavailable, InvalidParameter
from imgest.params import decode_cursor, encode_cursor, filter_text, utc
from imgest.storage.paths import image_id_of

T = TypeVar("T")
Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")

log = logging.getLogger(__name__)


class Unset:
    """Marks an update argument that was not given (None means "clear")."""


UNSET = Unset()


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


@dataclass(frozen=True)
class BlobRef:
    """One blob a catalog row references, with what fsck can check it against."""

    image_id: str
    path: str
    kind: str  # "original" or "rendition"
    bytes: int


@dataclass(frozen=True)
class Page:
    """One page of images and the cursor of the next page (None at the end)."""

    items: list[ImageRecord]
    next_cursor: str | None


def _utc(value: datetime) -> datetime:
    # Every stored time is UTC: SQLite keeps the wall time as text and hands back naive
    # datetimes, PostgreSQL a real timestamptz.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def lock_key(image_id: str) -> int:
    """A signed 64-bit key for PostgreSQL advisory locks on one image id."""
    return int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:8], "big", signed=True)


class Catalog:
    """The catalog database. Methods are blocking; call them from a worker thread.

    Blobs and rows of one image change together under the image's lock (a transaction-scoped
    PostgreSQL advisory lock on its id; SQLite's database write lock): `add_image` checks the
    blobs are there before it commits, `delete_image` and `release_orphans` remove blobs before
    they commit. So a blob is never removed between an upload's check and its commit, and a
    committed row never points at a blob removed under it.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(
        cls, url: str, *, options: CatalogOptions | None = None, migrate_schema: bool = True
    ) -> Catalog:
        """Connect to `url` and (by default) apply pending migrations."""
        engine = make_engine(url, options)
        catalog = cls(engine)
        if migrate_schema:
            catalog._guard(lambda: migrate(engine))
        return catalog

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    # -- helpers -------------------------------------------------------------------------
    def session(self) -> Session:
        """A new ORM session, for catalog modules beside this one (e.g. API keys)."""
        return self._sessions()

    def guard(self, fn: Callable[[], T]) -> T:
        """Run `fn`; a database that fails or does not answer raises CatalogUnavailable."""
        return self._guard(fn)

    def _guard(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except IntegrityError:
            raise
        except DataError as exc:
            # The database refused a value (a NUL, a number out of range): retrying the same
            # request cannot help, so it is not "unavailable, retry later".
            log.warning("catalog refused a value: %s", exc.orig if exc.orig is not None else exc)
            raise InvalidParameter(
                "A value in the request cannot be stored or searched for."
            ) from exc
        except (OperationalError, DBAPIError) as exc:
            log.warning("catalog error: %s", exc.orig if exc.orig is not None else exc)
            raise CatalogUnavailable() from exc

    def transact(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` in one transaction; database outages become CatalogUnavailable."""

        def run() -> T:
            with self._sessions() as session, session.begin():
                return fn(session)

        return self._guard(run)

    def ping(self) -> None:
        """Raise CatalogUnavailable unless the database answers."""

        def run() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        self._guard(run)

    def _lock(self, session: Session, image_id: str) -> None:
        """Hold `image_id`'s lock until the session's transaction ends."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(lock_key(image_id))))
        else:
            # SQLite: any write statement takes the database write lock, rows or not.
            session.execute(update(ImageRow).where(ImageRow.id == image_id).values(id=ImageRow.id))

    # -- writes ---------------------------------------------------------------------------
    def add_image(self, record: ImageRecord, verify: Callable[[], None] | None = None) -> bool:
        """Insert the image with its tags, renditions and predictions in one transaction.

        `verify` runs under the image's lock before the commit; it makes sure the record's
        blobs are stored (and raises, rolling everything back, when it cannot).
        Returns False (and writes nothing) when an image with this id is already recorded.
        """

        def run() -> bool:
            with self._sessions() as session:
                try:
                    with session.begin():
                        self._lock(session, record.id)
                        session.add(_image_row(record))
                        session.flush()  # the images row first: a duplicate fails here
                        session.add_all(TagRow(image_id=record.id, tag=t) for t in record.tags)
                        session.add_all(_rendition_row(record.id, r) for r in record.renditions)
                        session.add_all(_prediction_row(record.id, p) for p in record.predictions)
                        session.flush()
                        if verify is not None:
                            verify()
                except IntegrityError:
                    if self._exists(record.id):
                        return False
                    raise
                return True

        return self._guard(run)

    def add_prediction(self, image_id: str, prediction: PredictionRecord) -> bool:
        """Record one prediction; False (and nothing written) if (image, model version,
        pipeline version) already has one, so retries and re-runs are harmless."""
        return self._insert_once(
            _prediction_row(image_id, prediction), _prediction_key(image_id, prediction)
        )

    def add_rendition(self, image_id: str, rendition: RenditionRecord) -> bool:
        """Record one rendition; False if (image, pipeline, pipeline version) has one already."""
        key = and_(
            RenditionRow.image_id == image_id,
            RenditionRow.pipeline == rendition.pipeline,
            RenditionRow.pipeline_version == rendition.pipeline_version,
        )
        return self._insert_once(_rendition_row(image_id, rendition), key)

    def _insert_once(self, row: Base, key: Any) -> bool:
        def run() -> bool:
            with self._sessions() as session:
                try:
                    with session.begin():
                        session.add(row)
                except IntegrityError:
                    with self._sessions() as check:
                        if check.execute(select(exists().where(key))).scalar_one():
                            return False
                    raise  # not a duplicate: e.g. the image row is gone
                return True

        return self._guard(run)

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
        changed = self._change(image_id, label=label, tags=tags, description=description)
        return None if changed is None else changed[0]

    def add_metadata(self, image_id: str, add: Additions) -> tuple[ImageRecord, Applied] | None:
        """Merge an upload's tags, label and fields into a stored image (see `Additions`),
        under the image's lock; the updated record and what was applied, or None if absent."""
        return self._change(image_id, add=add)

    def _change(
        self,
        image_id: str,
        *,
        label: str | Unset | None = UNSET,
        tags: Sequence[str] | Unset = UNSET,
        description: str | Unset | None = UNSET,
        add: Additions | None = None,
    ) -> tuple[ImageRecord, Applied] | None:
        """The one write path of an image's metadata (PATCH, `imgest label`, uploads of
        stored bytes): replacements first, then additions merged into the result."""

        def run(session: Session) -> tuple[ImageRecord, Applied] | None:
            self._lock(session, image_id)
            row = session.get(ImageRow, image_id, with_for_update=True)
            if row is None:
                return None
            if not isinstance(label, Unset):
                row.label = label
            fields = dict(row.fields)
            if not isinstance(description, Unset):
                if description is None:
                    fields.pop("description", None)
                else:
                    fields["description"] = description
            if not isinstance(tags, Unset):
                session.execute(delete(TagRow).where(TagRow.image_id == image_id))
                session.add_all(TagRow(image_id=image_id, tag=t) for t in dict.fromkeys(tags))
            session.flush()
            applied = Applied()
            if add:
                current = self._load(session, image_id)
                assert current is not None
                applied = add.applied_to(current)
                session.add_all(TagRow(image_id=image_id, tag=t) for t in applied.tags_added)
                if applied.label == "set":
                    row.label = add.label
                fields.update({n: add.fields[n] for n in applied.fields_set})
            if fields != row.fields:
                row.fields = fields
            session.flush()
            record = self._load(session, image_id)
            assert record is not None
            return record, applied

        return self.transact(run)

    def delete_image(
        self, image_id: str, release: Callable[[ImageRecord], None] | None = None
    ) -> ImageRecord | None:
        """Remove the image's rows in one transaction; return what was removed.

        `release` (given the removed record) runs under the image's lock before the commit:
        it removes the blobs, so an upload of the same bytes racing this delete either
        finds the row or stores its blobs again before it records its own row.
        """

        def run() -> ImageRecord | None:
            with self._sessions() as session, session.begin():
                self._lock(session, image_id)
                record = self._load(session, image_id)
                if record is None:
                    return None
                for table in (TagRow, RenditionRow, PredictionRow):
                    session.execute(delete(table).where(table.image_id == image_id))
                session.execute(delete(ImageRow).where(ImageRow.id == image_id))
                if release is not None:
                    release(record)
                return record

        return self._guard(run)

    def release_orphans(
        self, image_id: str, paths: Sequence[str], release: Callable[[list[str]], None]
    ) -> list[str]:
        """Under `image_id`'s lock, call `release` with those `paths` no row references.

        For gc: a blob found unreferenced is removed while no upload can record a row for it.
        Returns the paths handed to `release`.
        """

        def run() -> list[str]:
            with self._sessions() as session, session.begin():
                self._lock(session, image_id)
                found = self._referenced(session, paths)
                unreferenced = [p for p in paths if p not in found]
                if unreferenced:
                    release(unreferenced)
                return unreferenced

        return self._guard(run)

    # -- reads ----------------------------------------------------------------------------
    def referenced(self, paths: Sequence[str]) -> set[str]:
        """Those of `paths` (blob-layout paths) that some catalog row references."""

        def run() -> set[str]:
            with self._sessions() as session:
                return self._referenced(session, paths)

        return self._guard(run)

    @staticmethod
    def _referenced(session: Session, paths: Sequence[str]) -> set[str]:
        # The layout names the image in every path, so both lookups use primary keys.
        ids = sorted({i for i in map(image_id_of, paths) if i is not None})
        found: set[str] = set()
        for start in range(0, len(ids), 500):  # bounded IN lists
            chunk = ids[start : start + 500]
            found.update(
                session.execute(
                    select(ImageRow.original_path).where(ImageRow.id.in_(chunk))
                ).scalars()
            )
            found.update(
                session.execute(
                    select(RenditionRow.path).where(RenditionRow.image_id.in_(chunk))
                ).scalars()
            )
        return found & set(paths)

    def blob_refs(self, batch: int = 500) -> Iterator[list[BlobRef]]:
        """Every blob the catalog references, in pages of `batch` images (keyset on id)."""
        after = ""
        while (page := self._guard(functools.partial(self._blob_page, after, batch))) is not None:
            after, refs = page
            yield refs

    def _blob_page(self, after: str, batch: int) -> tuple[str, list[BlobRef]] | None:
        with self._sessions() as session:
            images = session.execute(
                select(ImageRow.id, ImageRow.original_path, ImageRow.bytes)
                .where(ImageRow.id > after)
                .order_by(ImageRow.id)
                .limit(batch)
            ).all()
            if not images:
                return None
            refs = [BlobRef(i.id, i.original_path, "original", i.bytes) for i in images]
            ids = [i.id for i in images]
            rends = session.execute(
                select(RenditionRow.image_id, RenditionRow.path, RenditionRow.bytes)
                .where(RenditionRow.image_id.in_(ids))
                .order_by(RenditionRow.image_id, RenditionRow.path)
            ).all()
            refs += [BlobRef(r.image_id, r.path, "rendition", r.bytes) for r in rends]
            return ids[-1], refs

    def _exists(self, image_id: str) -> bool:
        with self._sessions() as session:
            return session.execute(select(exists().where(ImageRow.id == image_id))).scalar_one()

    def get_image(self, image_id: str) -> ImageRecord | None:
        """The image with everything derived from it, or None."""

        def run() -> ImageRecord | None:
            with self._sessions() as session:
                return self._load(session, image_id)

        return self._guard(run)

    def predictions_for(self, image_id: str) -> list[PredictionRecord]:
        """Every prediction of the image, oldest first (empty if none or no such image)."""

        def run() -> list[PredictionRecord]:
            with self._sessions() as session:
                query = (
                    select(PredictionRow)
                    .where(PredictionRow.image_id == image_id)
                    .order_by(PredictionRow.id)
                )
                return [_prediction_record(p) for p in session.execute(query).scalars()]

        return self._guard(run)

    def list_images(
        self, *, limit: int = 50, cursor: str | None = None, where: ImageFilter | None = None
    ) -> Page:
        """Newest first, keyset-paginated on (created_at, id)."""
        where = where or ImageFilter()
        after = decode_cursor(cursor) if cursor else None

        def run() -> Page:
            query = _filtered(select(ImageRow), where)
            if after is not None:
                stamp = after[0]
                query = query.where(
                    or_(
                        ImageRow.created_at < stamp,
                        and_(ImageRow.created_at == stamp, ImageRow.id < after[1]),
                    )
                )
            query = query.order_by(ImageRow.created_at.desc(), ImageRow.id.desc()).limit(limit + 1)
            with self._sessions() as session:
                rows = list(session.execute(query).scalars())
                more = len(rows) > limit
                rows = rows[:limit]
                items = self._hydrate(session, rows)
            next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
            return Page(items=items, next_cursor=next_cursor)

        return self._guard(run)

    def _load(self, session: Session, image_id: str) -> ImageRecord | None:
        row = session.execute(_IMAGE_BY_ID, {"id": image_id}).first()
        if row is None:
            return None
        return self._hydrate(session, [row])[0]

    def _hydrate(self, session: Session, rows: Sequence[Any]) -> list[ImageRecord]:
        """ImageRecords of image rows (ORM objects or plain rows) with their tags,
        renditions and predictions: one query for each of the three."""
        ids = {"ids": [r.id for r in rows]}
        if not ids["ids"]:
            return []
        tags: dict[str, list[str]] = {}
        for t in session.execute(_TAGS_OF, ids):
            tags.setdefault(t.image_id, []).append(t.tag)
        rends: dict[str, list[RenditionRecord]] = {}
        for r in session.execute(_RENDITIONS_OF, ids):
            rends.setdefault(r.image_id, []).append(_record(RenditionRecord, r))
        preds: dict[str, list[PredictionRecord]] = {}
        for p in session.execute(_PREDICTIONS_OF, ids):
            preds.setdefault(p.image_id, []).append(_prediction_record(p))
        return [
            _record(
                ImageRecord,
                r,
                created_at=_utc(r.created_at),
                fields=dict(r.fields),
                tags=tuple(tags.get(r.id, ())),
                renditions=tuple(rends.get(r.id, ())),
                predictions=tuple(preds.get(r.id, ())),
            )
            for r in rows
        ]

    # -- corpus jobs (rescore, export: issue 4) -------------------------------------------
    def count_images(self, where: ImageFilter | None = None) -> int:
        """How many images `where` selects."""
        query = _filtered(select(func.count()).select_from(ImageRow), where or ImageFilter())
        return self._guard(lambda: self._scalar(query))

    def image_page(
        self,
        pipeline: str,
        pipeline_version: str,
        *,
        where: ImageFilter | None = None,
        lacking: PredictionKey | None = None,
        after: str | None = None,
        limit: int = 500,
    ) -> list[PendingImage]:
        """One keyset page (by id) of the images `where` selects, each with the path of its
        stored `pipeline`@`pipeline_version` rendition if any; only those without the
        `lacking` prediction when it is given."""
        rendition = aliased(RenditionRow)
        columns = select(ImageRow.id, ImageRow.original_path, rendition.path, ImageRow.label)
        query = _filtered(columns, where or ImageFilter()).outerjoin(
            rendition,
            and_(
                rendition.image_id == ImageRow.id,
                rendition.pipeline == pipeline,
                rendition.pipeline_version == pipeline_version,
            ),
        )
        if lacking is not None:
            query = query.where(~_has_prediction(lacking))
        if after is not None:
            query = query.where(ImageRow.id > after)
        query = query.order_by(ImageRow.id).limit(limit)

        def run() -> list[PendingImage]:
            with self._sessions() as session:
                return [PendingImage(*row) for row in session.execute(query)]

        return self._guard(run)

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

        def run() -> dict[str, PredictionRecord]:
            found: dict[str, PredictionRecord] = {}
            with self._sessions() as session:
                for row in session.execute(query).scalars():
                    have = found.get(row.image_id)
                    if have is None or have.pipeline_version != pipeline_version:
                        found[row.image_id] = _prediction_record(row)
            return found

        return self._guard(run)

    def count_pending(self, key: PredictionKey, where: ImageFilter | None = None) -> int:
        """How many images `where` selects lack the `key` prediction."""
        query = _filtered(select(func.count()).select_from(ImageRow), where or ImageFilter())
        return self._guard(lambda: self._scalar(query.where(~_has_prediction(key))))

    def add_results(
        self, results: Sequence[tuple[str, PredictionRecord, RenditionRecord | None]]
    ) -> int:
        """Record (image id, prediction, new rendition or None) triples in one transaction.

        Idempotent: a prediction or rendition already recorded under its key is left as it
        is. Returns how many predictions were new.
        """
        predictions = [_prediction_values(i, p) for i, p, _ in results]
        renditions = [
            {**dataclasses.asdict(r), "image_id": i} for i, _, r in results if r is not None
        ]

        def run() -> int:
            with self._sessions() as session, session.begin():
                _insert_new(session, RenditionRow, renditions)
                return _insert_new(session, PredictionRow, predictions)

        return self._guard(run) if results else 0

    def prediction_runs(self, model: str, pipeline: str) -> list[PredictionRun]:
        """Every (model version, pipeline version) of these names with predictions, newest
        first (by its latest prediction)."""
        query = (
            select(
                PredictionRow.model,
                PredictionRow.model_version,
                PredictionRow.pipeline,
                PredictionRow.pipeline_version,
                func.count(),
                func.max(PredictionRow.created_at),
            )
            .where(PredictionRow.model == model, PredictionRow.pipeline == pipeline)
            .group_by(
                PredictionRow.model,
                PredictionRow.model_version,
                PredictionRow.pipeline,
                PredictionRow.pipeline_version,
            )
        )

        def run() -> list[PredictionRun]:
            with self._sessions() as session:
                runs = [
                    PredictionRun(PredictionKey(*row[:4]), int(row[4]), _utc(row[5]))
                    for row in session.execute(query)
                ]
            return sorted(runs, key=lambda r: r.latest, reverse=True)

        return self._guard(run)

    def paired_predictions(
        self,
        a: PredictionKey,
        b: PredictionKey,
        *,
        where: ImageFilter | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> list[PredictionPair]:
        """Images `where` selects that have both predictions: one keyset page, by id."""
        pa, pb = aliased(PredictionRow), aliased(PredictionRow)
        query = _filtered(
            select(
                ImageRow.id,
                ImageRow.label,
                pa.top1_label,
                pa.top1_score,
                pb.top1_label,
                pb.top1_score,
            ),
            where or ImageFilter(),
        )
        for alias, key in ((pa, a), (pb, b)):
            query = query.join(
                alias,
                and_(
                    alias.image_id == ImageRow.id,
                    alias.model_version == key.model_version,
                    alias.pipeline_version == key.pipeline_version,
                ),
            )
        if after is not None:
            query = query.where(ImageRow.id > after)
        query = query.order_by(ImageRow.id).limit(limit)

        def run() -> list[PredictionPair]:
            with self._sessions() as session:
                return [PredictionPair(*row) for row in session.execute(query)]

        return self._guard(run)

    def rendition_paths(
        self, image_ids: Sequence[str], pipeline: str, version: str
    ) -> dict[str, str]:
        """image id -> path of its stored `pipeline`@`version` rendition, where one exists."""
        query = select(RenditionRow.image_id, RenditionRow.path).where(
            RenditionRow.image_id.in_(list(image_ids)),
            RenditionRow.pipeline == pipeline,
            RenditionRow.pipeline_version == version,
        )

        def run() -> dict[str, str]:
            with self._sessions() as session:
                return {image_id: path for image_id, path in session.execute(query)}

        return self._guard(run)

    def _scalar(self, query: Select[Any]) -> int:
        with self._sessions() as session:
            return int(session.execute(query).scalar_one())


R = TypeVar("R")


def _filtered(query: Q, where: ImageFilter) -> Q:
    """`query` (over ImageRow) narrowed to the images `where` selects."""
    if where.tag is not None:
        query = query.where(
            exists().where(and_(TagRow.image_id == ImageRow.id, TagRow.tag == where.tag))
        )
    if where.label is not None:
        query = query.where(
            exists().where(
                and_(
                    PredictionRow.image_id == ImageRow.id,
                    PredictionRow.top1_label == where.label,
                )
            )
        )
    if where.label_contains is not None:
        # LIKE on lower(): in SQL on SQLite and PostgreSQL, and the EXISTS probes predictions
        # by image id, so a page of matches costs one index lookup per image row it passes.
        pattern = "%" + escape_like(where.label_contains.lower()) + "%"
        query = query.where(
            exists().where(
                and_(
                    PredictionRow.image_id == ImageRow.id,
                    func.lower(PredictionRow.top1_label).like(pattern, escape="\\"),
                )
            )
        )
    if where.since is not None:
        query = query.where(ImageRow.created_at >= where.since)
    if where.until is not None:
        query = query.where(ImageRow.created_at < where.until)
    return query


def escape_like(text: str) -> str:
    """`text` with LIKE's wildcards (and the escape character, a backslash) escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _table(cls: type[Base]) -> Table:
    """The Core table behind an ORM class (selecting from it yields plain rows)."""
    return cast(Table, cls.__table__)


# Built once: every duplicate upload and image GET loads a record through these. Plain
# rows, not ORM objects: building ORM instances (and the statements) was most of the time.
_IMAGES, _TAGS, _RENDITIONS, _PREDICTIONS = (
    _table(c) for c in (ImageRow, TagRow, RenditionRow, PredictionRow)
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


def _record(cls: type[R], row: object, **computed: Any) -> R:
    """A record dataclass from the row's same-named columns, plus computed fields."""
    names = [f.name for f in dataclasses.fields(cls) if f.name not in computed]  # type: ignore[arg-type]
    return cls(**{n: getattr(row, n) for n in names}, **computed)


def _row(cls: type[R], record: object, **computed: Any) -> R:
    """A table row from the record's same-named fields, plus computed columns."""
    columns = cls.__table__.columns.keys()  # type: ignore[attr-defined]
    values = {c: getattr(record, c) for c in columns if c not in computed and hasattr(record, c)}
    return cls(**values, **computed)


def _has_prediction(key: PredictionKey) -> Exists:
    return exists().where(
        and_(
            PredictionRow.image_id == ImageRow.id,
            PredictionRow.model_version == key.model_version,
            PredictionRow.pipeline_version == key.pipeline_version,
        )
    )


def _insert_new(session: Session, table: type[Base], rows: list[dict[str, Any]]) -> int:
    """INSERT rows, skipping those whose key is already there; returns how many were new."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:  # pragma: no cover - the catalog runs on SQLite or PostgreSQL
        raise NotImplementedError(f"idempotent insert on {dialect}")
    # One cached statement run for many rows (SQLAlchemy's "insertmanyvalues"), not a
    # multi-VALUES statement compiled anew per call; RETURNING counts the rows inserted.
    target = _table(table)
    key = next(iter(target.columns))
    statement = insert(target).on_conflict_do_nothing().returning(key)
    return len(session.execute(statement, rows).all())


def _prediction_record(row: Any) -> PredictionRecord:
    return _record(
        PredictionRecord,
        row,
        top=tuple(Label(**item) for item in row.top),
        created_at=_utc(row.created_at),
    )


def _prediction_key(image_id: str, p: PredictionRecord) -> Any:
    return and_(
        PredictionRow.image_id == image_id,
        PredictionRow.model_version == p.model_version,
        PredictionRow.pipeline_version == p.pipeline_version,
    )


def _image_row(record: ImageRecord) -> ImageRow:
    return _row(ImageRow, record, fields=dict(record.fields), created_at=_utc(record.created_at))


def _rendition_row(image_id: str, r: RenditionRecord) -> RenditionRow:
    return _row(RenditionRow, r, image_id=image_id)


def _prediction_values(image_id: str, p: PredictionRecord) -> dict[str, Any]:
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
        "created_at": _utc(p.created_at),
    }


def _prediction_row(image_id: str, p: PredictionRecord) -> PredictionRow:
    return PredictionRow(**_prediction_values(image_id, p))
