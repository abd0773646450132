"""What the `imgest` command modules share: the settings they load and the options they take."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from imgest.config import Settings, load_settings
from imgest.errors import InvalidParameter

StorageOption = Annotated[
    str | None,
    typer.Option("--storage", help="Blob store URL or directory (IMGEST_STORAGE_URL)."),
]
CatalogOption = Annotated[
    str | None, typer.Option("--catalog", help="Catalog SQLAlchemy URL (IMGEST_CATALOG_URL).")
]


def load(**overrides: Any) -> Settings:
    """The settings, with the options given on the command line (None: not given) on top."""
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def load_existing(**overrides: Any) -> Settings:
    """Settings whose catalog and blob directory must exist already (CatalogNotFound if not)."""
    from imgest.locations import require_existing

    settings = load(**overrides)
    require_existing(settings)
    return settings


def fail(exc: Exception) -> InvalidParameter:
    """A library ValueError/OSError about what the user gave, as a usage error (exit 2)."""
    return InvalidParameter(str(exc))
