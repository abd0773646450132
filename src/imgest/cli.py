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
    try:
        asgi = create_app(settings)
    except ConfigError as exc:
        typer.echo(f"imgest: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(
        asgi,
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


# --- corpus jobs: rescore, compare, export (issue 4) ----------------------------------------

Where = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        help="Filter the corpus like the API's list: label=L, tag=T, since=ISO, until=ISO "
        "(repeat for several).",
    ),
]


def _job_errors() -> tuple[type[Exception], ...]:
    from imgest.errors import JobError

    return (ConfigError, JobError)


@app.command()
def rescore(
    pipeline: Annotated[str, typer.Option(help="Pipeline to render and score through.")],
    model: Annotated[
        str | None,
        typer.Option(help="Model NAME[@VERSION] or model directory; default: the configured one."),
    ] = None,
    where: Where = None,
    engine: Annotated[str, typer.Option(help="local (process pool) or ray (Ray Data).")] = "local",
    workers: Annotated[
        int, typer.Option(help="Worker processes (local; 0 = this process) or Ray actors.")
    ] = 2,
    batch_size: Annotated[int, typer.Option(help="Images per model call.", min=1)] = 16,
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda (no fallback) [IMGEST_DEVICE].")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (auto, ray://...); default: local.")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Blob store URL or directory [IMGEST_STORAGE_URL].")
    ] = None,
    catalog: Annotated[
        str | None, typer.Option(help="Catalog SQLAlchemy URL [IMGEST_CATALOG_URL].")
    ] = None,
) -> None:
    """Score every image that lacks this model's prediction through this pipeline (resumable)."""
    from imgest.jobs import rescore as job
    from imgest.jobs.selection import parse_where

    settings = _settings(storage_url=storage, catalog_url=catalog)
    if engine not in ("local", "ray"):
        typer.echo("imgest: --engine must be local or ray", err=True)
        raise typer.Exit(2)
    try:
        summary = job.run(
            settings,
            model=model,
            pipeline=pipeline,
            where=parse_where(where or []),
            engine="ray" if engine == "ray" else "local",
            workers=workers,
            batch_size=batch_size,
            device=device,
            ray_address=ray_address,
            progress=True,
        )
    except _job_errors() as exc:
        typer.echo(f"imgest: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in summary.lines():
        typer.echo(line)
    if summary.failed:
        raise typer.Exit(1)


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="Run A: MODEL[:VERSION]@PIPELINE[:VERSION].")],
    b: Annotated[str, typer.Argument(help="Run B: MODEL[:VERSION]@PIPELINE[:VERSION].")],
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = Path(
        "compare.html"
    ),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the JSON summary here ('-': stdout).")
    ] = None,
    where: Where = None,
    top: Annotated[int, typer.Option(help="Labels in the change matrix.", min=1)] = 10,
    thumbnails: Annotated[int, typer.Option(help="Disagreements shown.", min=0)] = 48,
    storage: Annotated[
        str | None, typer.Option(help="Blob store URL or directory [IMGEST_STORAGE_URL].")
    ] = None,
    catalog: Annotated[
        str | None, typer.Option(help="Catalog SQLAlchemy URL [IMGEST_CATALOG_URL].")
    ] = None,
) -> None:
    """Compare two runs: agreement, change matrix, confidence, accuracy, disagreements."""
    from imgest.jobs.compare import compare as run_compare
    from imgest.jobs.compare import write_json
    from imgest.jobs.report import render_html
    from imgest.jobs.selection import parse_where

    settings = _settings(storage_url=storage, catalog_url=catalog)
    try:
        result = run_compare(settings, a, b, where=parse_where(where or []), thumbnails=thumbnails)
    except _job_errors() as exc:
        typer.echo(f"imgest: {exc}", err=True)
        raise typer.Exit(2) from None
    if html is not None:
        html.write_text(render_html(result, top=top))
        typer.echo(f"wrote {html}", err=True)
    if json_out is not None:
        text = write_json(result, top=top)
        if str(json_out) == "-":
            typer.echo(text, nl=False)
        else:
            json_out.write_text(text)
    typer.echo(
        f"agreement {result.agreement:.2%} ({result.agree} of {result.images} images)", err=True
    )


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="Output directory (created; reruns resume).")],
    pipeline: Annotated[str, typer.Option(help="Pipeline whose renditions are exported.")],
    format: Annotated[str, typer.Option(help="imagefolder or webdataset.")] = "imagefolder",
    model: Annotated[
        str | None,
        typer.Option(help="Model NAME[@VERSION] whose top-1 labels images without ground truth."),
    ] = None,
    where: Where = None,
    shard_size: Annotated[int, typer.Option(help="Samples per WebDataset shard.", min=1)] = 1000,
    storage: Annotated[
        str | None, typer.Option(help="Blob store URL or directory [IMGEST_STORAGE_URL].")
    ] = None,
    catalog: Annotated[
        str | None, typer.Option(help="Catalog SQLAlchemy URL [IMGEST_CATALOG_URL].")
    ] = None,
) -> None:
    """Write a labelled training set of one pipeline's renditions (streamed, resumable)."""
    from imgest.jobs import export as job
    from imgest.jobs.selection import parse_where

    settings = _settings(storage_url=storage, catalog_url=catalog)
    if format not in ("imagefolder", "webdataset"):
        typer.echo("imgest: --format must be imagefolder or webdataset", err=True)
        raise typer.Exit(2)
    try:
        summary = job.run(
            settings,
            pipeline=pipeline,
            out=out,
            format="webdataset" if format == "webdataset" else "imagefolder",
            model=model,
            where=parse_where(where or []),
            shard_size=shard_size,
            progress=True,
        )
    except _job_errors() as exc:
        typer.echo(f"imgest: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in summary.lines():
        typer.echo(line)
    if summary.failed:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="imgest")


if __name__ == "__main__":  # pragma: no cover
    main()
