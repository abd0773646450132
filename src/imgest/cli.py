"""The `imgest` command: a thin Typer layer over the library."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from imgest import __version__
from imgest.config import Settings, load_settings
from imgest.errors import ConfigError

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


# --- upload and import through the HTTP API (issue 5) ----------------------------------------

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="IMGEST_URL", help="Server base URL (default http://127.0.0.1:8000)."
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="IMGEST_API_KEY", help="Sent as Authorization: Bearer."),
]
TagOption = Annotated[list[str] | None, typer.Option("--tag", help="A tag for every file.")]
DescriptionOption = Annotated[
    str | None, typer.Option(help="Stored with every file as field 'description'.")
]
ConcurrencyOption = Annotated[int, typer.Option(min=1, max=64, help="Files in flight at once.")]
RetriesOption = Annotated[int, typer.Option(min=1, help="Attempts per request.")]
BackoffOption = Annotated[
    float, typer.Option(min=0.0, help="First retry backoff, seconds (doubles each time).")
]
SkipOption = Annotated[
    bool,
    typer.Option(help="Ask the server by SHA-256 first and skip files it already stores."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


@app.command("upload")
def upload_files(
    paths: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    tag: TagOption = None,
    description: DescriptionOption = None,
    label: Annotated[
        str | None, typer.Option(help="Ground-truth label for every file (field 'label').")
    ] = None,
    concurrency: ConcurrencyOption = 4,
    retries: RetriesOption = 8,
    backoff: BackoffOption = 0.5,
    skip_existing: SkipOption = True,
    json_out: JsonOption = False,
) -> None:
    """Upload image files; exit 1 if any was rejected or failed."""
    from imgest.bulk import Job

    jobs = [Job(p, tuple(tag or ()), label) for p in paths]
    _bulk(
        jobs,
        url=url,
        api_key=api_key,
        description=description,
        concurrency=concurrency,
        policy=(retries, backoff),
        skip_existing=skip_existing,
        json_out=json_out,
    )


@app.command("import")
def import_folder(
    directory: Annotated[Path, typer.Argument(exists=True, file_okay=False, readable=True)],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    tags_from_folders: Annotated[
        bool, typer.Option(help="Tag each file with its folder names below DIRECTORY.")
    ] = False,
    label_from_folder: Annotated[
        bool, typer.Option(help="Send each file's folder name as its ground-truth 'label'.")
    ] = False,
    ext: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated extensions to send "
            "(default: jpg,jpeg,png,webp,gif,tif,tiff,bmp,heic,heif,avif)."
        ),
    ] = None,
    tag: TagOption = None,
    description: DescriptionOption = None,
    concurrency: ConcurrencyOption = 4,
    retries: RetriesOption = 8,
    backoff: BackoffOption = 0.5,
    skip_existing: SkipOption = True,
    json_out: JsonOption = False,
) -> None:
    """Import every image under DIRECTORY (recursive); rerunning skips what is stored."""
    from imgest.bulk import DEFAULT_EXTENSIONS, find_images, folder_jobs

    extensions = [e.strip() for e in ext.split(",") if e.strip()] if ext else DEFAULT_EXTENSIONS
    paths = find_images(directory, extensions)
    jobs = folder_jobs(
        directory,
        paths,
        tags=tag or (),
        tags_from_folders=tags_from_folders,
        label_from_folder=label_from_folder,
    )
    _bulk(
        jobs,
        url=url,
        api_key=api_key,
        description=description,
        concurrency=concurrency,
        policy=(retries, backoff),
        skip_existing=skip_existing,
        json_out=json_out,
    )


def _bulk(
    jobs: list[Any],
    *,
    url: str | None,
    api_key: str | None,
    description: str | None,
    concurrency: int,
    policy: tuple[int, float],
    skip_existing: bool,
    json_out: bool,
) -> None:
    import asyncio

    try:
        from imgest import bulk
        from imgest.client import AsyncClient, RetryPolicy
        from imgest.console import progress, render_summary
    except ImportError as exc:  # httpx, tenacity and rich come with the `client` extra
        typer.echo(f"imgest: {exc.name} is missing: pip install 'imgest[client]'", err=True)
        raise typer.Exit(2) from None

    retry = RetryPolicy(attempts=policy[0], initial=policy[1])

    async def go() -> bulk.Summary:
        async with AsyncClient(
            url, api_key=api_key, retry=retry, max_connections=concurrency
        ) as client:
            with progress(len(jobs)) as advance:
                return await bulk.run(
                    client,
                    jobs,
                    concurrency=concurrency,
                    description=description,
                    skip_existing=skip_existing,
                    on_done=advance,
                )

    summary = asyncio.run(go())
    render_summary(summary, as_json=json_out)
    if not summary.ok:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="imgest")


if __name__ == "__main__":  # pragma: no cover
    main()
