"""Where the catalog and blob store that settings name live, and whether they exist yet.

The default paths (`var/catalog.db`, `var/blobs`) are relative to the working directory, as
`make run` serves them from the repository root. Only `imgest serve` and `imgest init` create a
catalog or blob directory; every other command calls `require_existing` first, so a command run
from another folder fails naming the absolute path it looked at instead of quietly starting an
empty corpus there.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgest.config import Settings
from imgest.errors import CatalogNotFound


def sqlite_file(catalog_url: str) -> Path | None:
    """The absolute path of a SQLite catalog file; None for a server database or in-memory."""
    from imgest.catalog.db import normalize_url

    parsed = normalize_url(catalog_url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):  # a SQLite URI filename: left to SQLite
        return None
    return Path(database).expanduser().absolute()


def blob_directory(storage_url: str) -> Path | None:
    """The absolute directory of a local blob store; None for memory, Azure, S3, plugins."""
    from imgest.storage.registry import local_directory

    return local_directory(storage_url)


def describe(settings: Settings) -> str:
    """One line naming the catalog and blob store, resolved (passwords and keys hidden)."""
    from imgest.catalog.db import redact_url
    from imgest.storage.remote import redact

    catalog = sqlite_file(settings.catalog_url)
    blobs = blob_directory(settings.storage_url)
    return (
        f"catalog {catalog or redact_url(settings.catalog_url)}, "
        f"blobs {blobs or redact(settings.storage_url)}"
    )


def require_existing(settings: Settings) -> None:
    """CatalogNotFound unless the SQLite catalog file and local blob directory both exist.

    A server database (PostgreSQL) is not checked here: it exists or it does not answer
    (CatalogUnavailable); remote stores likewise.
    """
    catalog = sqlite_file(settings.catalog_url)
    if catalog is not None and not catalog.is_file():
        raise CatalogNotFound(_missing("catalog", catalog, "IMGEST_CATALOG_URL", "--catalog"))
    blobs = blob_directory(settings.storage_url)
    if blobs is not None and not blobs.is_dir():
        raise CatalogNotFound(_missing("blob store", blobs, "IMGEST_STORAGE_URL", "--storage"))


def _missing(what: str, path: Path, variable: str, option: str) -> str:
    return (
        f"no {what} at {path} (relative paths are taken from the current directory, "
        f"{Path(os.getcwd())}). Run imgest from the folder `imgest serve` runs in, point "
        f"{variable} (or {option}, or the TOML file IMGEST_CONFIG names) at the existing one, "
        "or create a new one with `imgest init`."
    )
