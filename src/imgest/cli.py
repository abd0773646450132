"""The `imgest` command: a thin Typer layer over the library."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from imgest import __version__
from imgest.config import Settings, load_settings
from imgest.errors import ConfigError, ImgestError

if TYPE_CHECKING:
    from imgest.catalog.repo import Catalog
    from imgest.storage.base import BlobMeta, BlobStore

T = TypeVar("T")
EXIT_UNAVAILABLE = 3  # storage or catalog unreachable (2 is a usage or settings error)

app = typer.Typer(
    help="imgest: photo ingest for image-recognition networks.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        typer.echo(f"imgest: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [IMGEST_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port [IMGEST_PORT].")] = None,
    storage: Annotated[
        str | None, typer.Option(help="Blob store URL or directory [IMGEST_STORAGE_URL].")
    ] = None,
    catalog: Annotated[
        str | None, typer.Option(help="Catalog SQLAlchemy URL [IMGEST_CATALOG_URL].")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Serve the HTTP API (defaults: 127.0.0.1:8000, ./var/blobs, ./var/catalog.db)."""
    import uvicorn

    from imgest.app import create_app

    settings = _settings(host=host, port=port, storage_url=storage, catalog_url=catalog)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=10,
    )


@app.command()
def migrate(
    catalog: Annotated[
        str | None, typer.Option(help="Catalog SQLAlchemy URL [IMGEST_CATALOG_URL].")
    ] = None,
) -> None:
    """Apply catalog migrations (the server also does this at start-up)."""
    from imgest.app import open_catalog

    settings = _settings(catalog_url=catalog)
    try:
        open_catalog(settings).close()
    except ImgestError as exc:
        typer.echo(f"imgest: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    typer.echo("catalog is up to date")


@app.command()
def config(
    reference: Annotated[
        bool, typer.Option("--reference", help="Print the settings reference as Markdown.")
    ] = False,
) -> None:
    """Print the effective settings as JSON (or the reference of every setting)."""
    if reference:
        from imgest.docs import settings_reference

        typer.echo(settings_reference(), nl=False)
        return
    from imgest.catalog.db import redact_url
    from imgest.storage.remote import redact

    shown = _settings().model_dump(mode="json")
    shown["storage_url"] = redact(shown["storage_url"])  # keys stay out of terminals and logs
    shown["catalog_url"] = redact_url(shown["catalog_url"])
    typer.echo(json.dumps(shown, indent=2))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


# --- maintenance jobs (issue 3) ---------------------------------------------------------

_STORAGE_OPTION = typer.Option(help="Blob store URL or directory [IMGEST_STORAGE_URL].")
_CATALOG_OPTION = typer.Option(help="Catalog SQLAlchemy URL [IMGEST_CATALOG_URL].")


def _run_job(settings: Settings, job: Callable[[BlobStore, Catalog], Awaitable[T]]) -> T:
    """Open the store and catalog that settings name, run `job` on them, close both."""
    import anyio

    from imgest.app import open_catalog, store_options
    from imgest.storage.base import StoreError
    from imgest.storage.registry import open_store

    async def main() -> T:
        store = open_store(settings.storage_url, options=store_options(settings))
        catalog = open_catalog(settings, migrate_schema=False)
        try:
            return await job(store, catalog)
        finally:
            await store.close()
            catalog.close()

    try:
        return anyio.run(main)
    except (ImgestError, StoreError) as exc:
        typer.echo(f"imgest: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


@app.command()
def gc(
    grace: Annotated[
        str, typer.Option(help="Keep unreferenced blobs younger than this (90s, 30m, 1h, 2d).")
    ] = "1h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    storage: Annotated[str | None, _STORAGE_OPTION] = None,
    catalog: Annotated[str | None, _CATALOG_OPTION] = None,
) -> None:
    """Delete blobs no catalog row references that are older than the grace period."""
    from imgest.jobs import gc as job

    try:
        grace_period = job.parse_duration(grace)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--grace") from None
    settings = _settings(storage_url=storage, catalog_url=catalog)

    def listed(meta: BlobMeta) -> None:
        if not as_json:
            verb = "would delete" if dry_run else "deleted"
            typer.echo(f"{verb} {meta.path} ({meta.size} bytes)")

    report = _run_job(
        settings,
        lambda store, cat: job.run(
            store, cat, grace=grace_period, dry_run=dry_run, on_delete=listed
        ),
    )
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    typer.echo(
        f"scanned {report.scanned} blobs ({report.scanned_bytes} bytes): "
        f"{report.referenced} referenced, {report.young} unreferenced within the grace period, "
        f"{report.unrecognized} outside the layout; {verb} {report.deleted} "
        f"({report.deleted_bytes} bytes)" + (f", {report.failed} failed" if report.failed else "")
    )


@app.command()
def fsck(
    deep: Annotated[
        bool, typer.Option("--deep", help="Also hash every original against its id.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    storage: Annotated[str | None, _STORAGE_OPTION] = None,
    catalog: Annotated[str | None, _CATALOG_OPTION] = None,
) -> None:
    """Check every catalog row's blobs exist (and with --deep, hash right); exit 1 on problems."""
    from imgest.jobs import fsck as job

    settings = _settings(storage_url=storage, catalog_url=catalog)

    def found(problem: job.Problem) -> None:
        if not as_json:
            typer.echo(
                f"{problem.kind}: {problem.path} (image {problem.image_id}): {problem.detail}"
            )

    report = _run_job(settings, lambda store, cat: job.run(store, cat, deep=deep, on_problem=found))
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(
            f"checked {report.images} images, {report.blobs} blobs"
            + (f", hashed {report.bytes_hashed} bytes" if deep else "")
            + f": {len(report.problems)} problem(s)"
        )
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="imgest")


if __name__ == "__main__":  # pragma: no cover
    main()
