"""`imgest backfill` and `imgest index rebuild`: what is kept beside the corpus to make later
work cheap (intermediates for new pipelines, the ANN index of similar images)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from imgest.cli_jobs import ReportJsonOption, Where, summarize
from imgest.cli_options import CatalogOption, StorageOption, load_existing


def backfill(
    long_side: Annotated[
        int | None,
        typer.Option(help="The intermediate's least long side (IMGEST_INTERMEDIATE; not off)."),
    ] = None,
    where: Where = None,
    workers: Annotated[int, typer.Option(help="Worker processes (0 = this process).", min=0)] = 2,
    batch_size: Annotated[
        int,
        typer.Option(help="Images per batch: read, reduced, stored and recorded together.", min=1),
    ] = 16,
    storage: StorageOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Store the intermediate of every image larger than one that lacks it (resumable).

    New pipelines, on-demand renditions and rescore render from intermediates where they are
    large enough (docs/intermediate.md)."""
    from imgest.jobs import backfill as job
    from imgest.jobs.selection import parse_where

    overrides: dict[str, Any] = {"storage_url": storage, "catalog_url": catalog}
    if long_side is not None:
        overrides["intermediate"] = long_side
    settings = load_existing(**overrides)
    summarize(
        lambda: job.run(
            settings,
            where=parse_where(where or []),
            workers=workers,
            batch_size=batch_size,
            progress=True,
        )
    )


index_app = typer.Typer(help="The approximate index of similar images.", no_args_is_help=True)


@index_app.command("rebuild")
def index_rebuild(
    model: Annotated[
        str | None,
        typer.Option(
            help="Model NAME or NAME@VERSION whose embeddings are indexed "
            "(default: the active one)."
        ),
    ] = None,
    threads: Annotated[
        int, typer.Option(help="Threads building the graph (0: every core).", min=0)
    ] = 0,
    as_json: ReportJsonOption = False,
    storage: StorageOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Build the ANN index from the catalog's embeddings, store it under indexes/ and publish it."""
    import anyio

    from imgest.jobs import index as job
    from imgest.runtime import Runtime

    settings = load_existing(storage_url=storage, catalog_url=catalog)

    async def run() -> job.IndexReport:
        async with Runtime(settings).open(migrate_schema=False) as opened:
            registry = opened.registry
            active = await registry.ensure_default(settings.model_dir)  # as serve does
            entry = (
                await anyio.to_thread.run_sync(lambda: registry.resolve(model)) if model else active
            )
            batches = job.catalog_embeddings(opened.catalog, entry.version)
            return await job.rebuild(
                opened.store, entry.name, entry.version, batches, threads=threads
            )

    report = anyio.run(run)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    typer.echo(
        f"indexed {report.vectors} vectors of {report.model}@{report.version[:12]} in "
        f"{report.build_s:.1f} s: {report.path} ({report.bytes} bytes)"
        + (f"; removed {len(report.pruned)} older build(s)" if report.pruned else "")
    )


def register(app: typer.Typer) -> None:
    """Add these commands to the `imgest` command (in --help order)."""
    app.command()(backfill)
    app.add_typer(index_app, name="index")
