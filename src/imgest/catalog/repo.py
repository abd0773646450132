"""The catalog: one object over the catalog database, its queries grouped by concern.

`Catalog` is what the API, the CLI and the jobs hold. Its queries live in one module per
concern, each a class over the same `Database` (session.py: one engine, one way to run a
read or a transaction, one mapping of outages to CatalogUnavailable):

- images.py: image records and the image lock (upload, read, change, delete);
- pages.py: list pages of images (newest first, or by confidence);
- maintenance.py: what gc and fsck ask (referenced blobs, leasing orphans for deletion);
- corpus_queries.py: what rescore, compare and export read and write;
- embeddings.py: what the similarity index loads and catches up with;
- leases.py (the base of the three first): blob leases, which order blob writes and deletes
  without a storage call inside a transaction (locks.py: the image lock they take).

Why classes combined by inheritance rather than a facade of three objects: the concerns
share nothing but the database (the lock is a function of a session, the row mapping and
filters are modules of their own), so combining them adds no state and no forwarding code,
and every caller keeps calling `catalog.add_image(...)`, `catalog.blob_refs()`, ... as one
object, which keeps one thing to pass around, to fake in tests, and to open and close.
The names callers import from here (ImageFilter, Page, BlobRef, UNSET, ...) stay here too.
"""

from __future__ import annotations

from datetime import timedelta

from imgest.catalog.corpus_queries import CorpusQueries
from imgest.catalog.db import CatalogOptions, make_engine, migrate
from imgest.catalog.embeddings import Embeddings
from imgest.catalog.filters import ImageFilter
from imgest.catalog.images import UNSET, Images, Unset
from imgest.catalog.maintenance import BlobRef, Maintenance
from imgest.catalog.pages import SORTS, ImagePages, Page, Sort

__all__ = ["SORTS", "UNSET", "BlobRef", "Catalog", "ImageFilter", "Page", "Sort", "Unset"]


class Catalog(Images, ImagePages, Maintenance, CorpusQueries, Embeddings):
    """The catalog database. Methods are blocking; call them from a worker thread.

    Rows and blob leases of one image change under the image's lock (see images.py).
    """

    @classmethod
    def open(
        cls, url: str, *, options: CatalogOptions | None = None, migrate_schema: bool = True
    ) -> Catalog:
        """Connect to `url` and (by default) apply pending migrations."""
        options = options or CatalogOptions()
        engine = make_engine(url, options)
        catalog = cls(engine)
        catalog.lease_ttl = timedelta(seconds=options.lease_ttl_s)
        if migrate_schema:
            catalog.guard(lambda: migrate(engine))
        return catalog
