"""The `imgest` command: a thin Typer layer over the library.

This module holds the command group, the set-up commands (serve, init, migrate, config,
version) and `keys`; the others live by concern in `cli_models` (models, pipelines, label),
`cli_client` (upload, import) and `cli_jobs` (gc, fsck, rescore, compare, export), each adding
its commands through `register`.

Expected failures are not handled here one by one: they escape as exceptions and
`imgest.exits` turns each into its exit code and one line on stderr (the table is in
`imgest --help` and docs/cli.md).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from imgest import __version__, cli_client, cli_jobs, cli_models, cli_store
from imgest.cli_options import CatalogOption, StorageOption, fail, load
from imgest.exits import EXIT_FAILED, ImgestGroup, epilog

if TYPE_CHECKING:
    from imgest.catalog.keys import KeyStore

app = typer.Typer(
    cls=ImgestGroup,
    help="imgest: photo ingest for image-recognition networks.\n\n"
    "Settings come from IMGEST_* variables and the TOML file IMGEST_CONFIG names; relative "
    "paths (the defaults var/catalog.db and var/blobs) are taken from the current directory. "
    "Only `serve` and `init` create a catalog or blob directory.",
    epilog=epilog(),
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """The options before any command."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (IMGEST_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port (IMGEST_PORT).")] = None,
    storage: StorageOption = None,
    catalog: CatalogOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    insecure: Annotated[
        bool | None,
        typer.Option(
            "--insecure",
            help="Allow a non-loopback address with auth off (IMGEST_INSECURE).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (defaults: 127.0.0.1:8000, ./var/blobs, ./var/catalog.db).

    Creates the catalog and blob directory if they do not exist yet, and says where they are.
    """
    from imgest.memory import tune_malloc
    from imgest.server import serve as run_server

    settings = load(
        host=host, port=port, storage_url=storage, catalog_url=catalog, insecure=insecure
    )
    # Before any worker thread exists: arenas are handed out as threads first allocate.
    tune_malloc(arena_max=settings.malloc_arena_max, mmap_threshold=settings.malloc_mmap_threshold)
    run_server(settings, log_level=log_level)


@app.command()
def init(
    storage: StorageOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Create the catalog (schema up to date) and blob store the settings name, and say where.

    Safe to rerun: what exists is kept. `imgest serve` does the same at start-up.
    """
    import anyio

    from imgest.locations import describe
    from imgest.runtime import Runtime

    settings = load(storage_url=storage, catalog_url=catalog)
    runtime = Runtime(settings)

    async def touch_store() -> None:
        await runtime.open_store().close()

    anyio.run(touch_store)
    runtime.open_catalog().close()
    typer.echo(f"ready: {describe(settings)}")


@app.command()
def migrate(
    catalog: CatalogOption = None,
) -> None:
    """Apply catalog migrations to an existing catalog (serve and init also do this)."""
    from imgest.locations import require_existing
    from imgest.runtime import Runtime

    settings = load(catalog_url=catalog)
    require_existing(settings.model_copy(update={"storage_url": "memory://"}))
    Runtime(settings).open_catalog().close()
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

    shown = load().model_dump(mode="json")
    shown["storage_url"] = redact(shown["storage_url"])  # keys stay out of terminals and logs
    shown["catalog_url"] = redact_url(shown["catalog_url"])
    typer.echo(json.dumps(shown, indent=2))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


cli_models.register(app)
cli_client.register(app)


# --- API keys (issue 6) ----------------------------------------------------------------------
keys_app = typer.Typer(help="Create, list and revoke API keys (stored hashed in the catalog).")
app.add_typer(keys_app, name="keys")


def _key_store(catalog: str | None) -> KeyStore:
    from imgest.catalog.keys import KeyStore
    from imgest.locations import require_existing
    from imgest.runtime import Runtime

    settings = load(catalog_url=catalog)
    require_existing(settings.model_copy(update={"storage_url": "memory://"}))
    return KeyStore(Runtime(settings).open_catalog())


@keys_app.command("create")
def keys_create(
    scope: Annotated[
        list[str], typer.Option("--scope", help="upload, read or admin; repeat for several.")
    ],
    name: Annotated[str, typer.Option(help="A label for the key (who or what uses it).")] = "",
    catalog: CatalogOption = None,
) -> None:
    """Create a key and print its token ONCE (only a hash is kept)."""
    store = _key_store(catalog)
    try:
        new = store.create(scope, name=name)
    except ValueError as exc:
        raise fail(exc) from None
    finally:
        store.catalog.close()
    typer.echo(f"created key {new.key.id} ({', '.join(new.key.scopes)}); its token, shown once:")
    typer.echo(new.token)


@keys_app.command("list")
def keys_list(catalog: CatalogOption = None) -> None:
    """List keys: id, scopes, name, created, revoked (never the secret)."""
    store = _key_store(catalog)
    try:
        keys = store.list()
    finally:
        store.catalog.close()
    for key in keys:
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "active"
        created = key.created_at.isoformat(timespec="seconds")
        typer.echo(f"{key.id}\t{','.join(key.scopes)}\t{created}\t{revoked}\t{key.name}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key id (from `keys list`).")],
    catalog: CatalogOption = None,
) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    store = _key_store(catalog)
    try:
        revoked = store.revoke(key_id)
    finally:
        store.catalog.close()
    if not revoked:
        typer.echo(f"imgest: no active key {key_id!r}", err=True)
        raise typer.Exit(EXIT_FAILED)
    typer.echo(f"revoked key {key_id}")


cli_jobs.register(app)
cli_store.register(app)


_SERVER_ONLY = frozenset(
    {"fastapi", "starlette", "uvicorn", "h11", "uvloop", "python_multipart", "multipart", "PIL",
     "pi_heif", "simplejpeg", "numpy", "onnxruntime", "sqlalchemy", "alembic", "jinja2",
     "prometheus_client", "pythonjsonlogger", "usearch"}
)  # fmt: skip


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="imgest")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _SERVER_ONLY:
            raise
        # `pip install imgest` is the client: upload and import work, the rest needs the server.
        typer.echo(
            f"imgest: this command needs the server's dependencies ({exc.name} is not "
            "installed): pip install 'imgest[server]'",
            err=True,
        )
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
