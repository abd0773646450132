"""Catalog queries of gc and fsck: which blobs rows reference; leasing the others to delete."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from imgest.catalog.leases import Lease, Leases, lease_deletes
from imgest.catalog.locks import locked
from imgest.catalog.models import ImageRow, RenditionRow
from imgest.storage.paths import image_id_of


@dataclass(frozen=True)
class BlobRef:
    """One blob a catalog row references, with what fsck can check it against."""

    image_id: str
    path: str
    kind: str  # "original" or "rendition"
    bytes: int


class Maintenance(Leases):
    """What gc asks before it removes a blob, and what fsck checks the store against."""

    def lease_orphans(self, image_id: str, paths: Sequence[str], lease: Lease) -> list[str]:
        """Under `image_id`'s lock: a delete lease (`lease`, filled in) on those of `paths`
        (all of that image) that no row references and no live write lease covers. Returns
        the unreferenced paths (`lease.paths`: those of them leased).

        For gc: it deletes `lease.paths` after the commit, then ends the lease; no writer
        can take a write lease on them, nor record a row, until it does.
        """
        with locked(self, image_id) as session:
            found = _referenced(session, paths)
            unreferenced = [p for p in paths if p not in found]
            if not unreferenced:
                lease.paths = ()
                return []
            lease_deletes(session, lease, unreferenced, self.lease_ttl)
            return unreferenced

    def referenced(self, paths: Sequence[str]) -> set[str]:
        """Those of `paths` (blob-layout paths) that some catalog row references."""
        with self.reading() as session:
            return _referenced(session, paths)

    def blob_refs(self, batch: int = 500) -> Iterator[list[BlobRef]]:
        """Every blob the catalog references, in pages of `batch` images (keyset on id)."""
        after = ""
        while True:
            with self.reading() as session:  # one short session a page: none held between
                page = _blob_page(session, after, batch)
            if page is None:
                return
            after, refs = page
            yield refs


def _referenced(session: Session, paths: Sequence[str]) -> set[str]:
    # The layout names the image in every path, so both lookups use primary keys.
    ids = sorted({i for i in map(image_id_of, paths) if i is not None})
    found: set[str] = set()
    for start in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[start : start + 500]
        found.update(
            session.execute(select(ImageRow.original_path).where(ImageRow.id.in_(chunk))).scalars()
        )
        found.update(
            session.execute(
                select(RenditionRow.path).where(RenditionRow.image_id.in_(chunk))
            ).scalars()
        )
    return found & set(paths)


def _blob_page(session: Session, after: str, batch: int) -> tuple[str, list[BlobRef]] | None:
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
