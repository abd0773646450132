"""The catalog: one object over the catalog database, its queries grouped by concern.

`Catalog` is what the API, the CLI and the jobs hold. Its queries live in one module per
concern, each a class over the same `Database` (session.py: one engine, one way to run a
read or a transaction, one mapping of outages to CatalogUnavailable):

- images.py: image records and the image lock (upload, read, list, change, delete);
- maintenance.py: what gc and fsck ask (referenced blobs, releasing orphans under the lock);
- corpus_queries.py: what rescore, compare and export read and write.

Why classes combined by inheritance rather than a facade of three objects: the concerns
share nothing but the database (the lock is a function of a session, the row mapping and
filters are modules of their own), so combining them adds no state and no forwarding code,
and every caller keeps calling `catalog.add_image(...)`, `catalog.blob_refs()`, ... as one
object, which keeps one thing to pass around, to fake in tests, and to open and close.
The names callers import from here (ImageFilter, Page, BlobRef, UNSET, ...) stay here too.
"""

from __future__ import annotations

from imgest.catalog.corpus_queries import CorpusQueries
from imgest.catalog.db import CatalogOptions, make_engine, migrate
from imgest.catalog.filters import ImageFilter
from imgest.catalog.images import SORTS, UNSET, Images, Page, Sort, Unset
from imgest.catalog.maintenance import BlobRef, Maintenance

__all__ = ["SORTS", "UNSET", "BlobRef", "Catalog", "ImageFilter", "Page", "Sort", "Unset"]


class Catalog(Images, Maintenance, CorpusQueries):
    """The catalog database. Methods are blocking; call them from a worker thread.

    Blobs and rows of one image change together under the image's lock (see images.py).
    """

    @classmethod
    def open(
        cls, url: str, *, options: CatalogOptions | None = None, migrate_schema: bool = True
    ) -> Catalog:
        """Connect to `url` and (by default) apply pending migrations."""
        engine = make_engine(url, options)
        catalog = cls(engine)
        if migrate_schema:
            catalog.guard(lambda: migrate(engine))
        return catalog
