"""The `imgest` command: a thin Typer layer over the library."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imgest import __version__
from imgest.config import Settings, load_settings
from imgest.errors import ConfigError

if TYPE_CHECKING:
    from imgest.catalog.keys import KeyStore

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
    insecure: Annotated[
        bool | None,
        typer.Option(
            "--insecure",
            help="Allow a non-loopback address with auth off [IMGEST_INSECURE].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (defaults: 127.0.0.1:8000, ./var/blobs, ./var/catalog.db)."""
    from imgest.server import serve as run_server

    settings = _settings(
        host=host, port=port, storage_url=storage, catalog_url=catalog, insecure=insecure
    )
    try:
        run_server(settings, log_level=log_level)
    except ConfigError as exc:
        typer.echo(f"imgest: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def migrate(
    catalog: Annotated[
        str | None, typer.Option(help="Catalog SQLAlchemy URL [IMGEST_CATALOG_URL].")
    ] = None,
) -> None:
    """Apply catalog migrations (the server also does this at start-up)."""
    from imgest.catalog.repo import Catalog

    settings = _settings(catalog_url=catalog)
    Catalog.open(settings.catalog_url).close()
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
    typer.echo(json.dumps(_settings().model_dump(mode="json"), indent=2))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


# --- API keys (issue 6) ----------------------------------------------------------------------
keys_app = typer.Typer(help="Create, list and revoke API keys (stored hashed in the catalog).")
app.add_typer(keys_app, name="keys")

CatalogOption = Annotated[
    str | None, typer.Option("--catalog", help="Catalog SQLAlchemy URL [IMGEST_CATALOG_URL].")
]


def _key_store(catalog: str | None) -> KeyStore:
    from imgest.catalog.keys import KeyStore
    from imgest.catalog.repo import Catalog

    settings = _settings(catalog_url=catalog)
    return KeyStore(Catalog.open(settings.catalog_url, timeout_s=settings.catalog_timeout_s))


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
        typer.echo(f"imgest: {exc}", err=True)
        raise typer.Exit(2) from None
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
        raise typer.Exit(1)
    typer.echo(f"revoked key {key_id}")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="imgest")


if __name__ == "__main__":  # pragma: no cover
    main()
