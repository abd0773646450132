"""`imgest gc`, `fsck`, `rescore`, `compare` and `export`: the jobs over a whole corpus."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from imgest.cli_options import CatalogOption, StorageOption, load, load_existing
from imgest.config import Settings
from imgest.exits import EXIT_FAILED, EXIT_USAGE
from imgest.labels import MIN_SCORE

if TYPE_CHECKING:
    from imgest.catalog.repo import Catalog
    from imgest.storage.base import BlobMeta, BlobStore

T = TypeVar("T")


def _run_job(settings: Settings, job: Callable[[BlobStore, Catalog], Awaitable[T]]) -> T:
    """Open the store and catalog that settings name, run `job` on them, close both."""
    import anyio

    from imgest.locations import require_existing
    from imgest.runtime import Runtime

    require_existing(settings)

    async def main() -> T:
        async with Runtime(settings).open(migrate_schema=False) as opened:
            return await job(opened.store, opened.catalog)

    return anyio.run(main)


ReportJsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def gc(
    grace: Annotated[
        str, typer.Option(help="Keep unreferenced blobs younger than this (90s, 30m, 1h, 2d).")
    ] = "1h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")
    ] = False,
    as_json: ReportJsonOption = False,
    storage: StorageOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Delete blobs no catalog row references that are older than the grace period."""
    from imgest.jobs import gc as job

    try:
        grace_period = job.parse_duration(grace)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--grace") from None
    settings = load(storage_url=storage, catalog_url=catalog)

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
        f"({report.deleted_bytes} bytes)"
        + (f", {report.leased} left to writers in flight" if report.leased else "")
        + (f", {report.failed} failed" if report.failed else "")
    )


def fsck(
    deep: Annotated[
        bool, typer.Option("--deep", help="Also hash every original against its id.")
    ] = False,
    as_json: ReportJsonOption = False,
    storage: StorageOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Check every catalog row's blobs exist (and with --deep, hash right); exit 1 on problems."""
    from imgest.jobs import fsck as job

    settings = load(storage_url=storage, catalog_url=catalog)

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
        raise typer.Exit(EXIT_FAILED)


# --- corpus jobs: rescore, compare, export (issue 4) ----------------------------------------

Where = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        help="Filter the corpus like the API's list: label=L, tag=T, since=ISO, until=ISO "
        "(repeat for several).",
    ),
]


def _choice(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        typer.echo(f"imgest: {option} must be one of {', '.join(allowed)}", err=True)
        raise typer.Exit(EXIT_USAGE)


def summarize(job: Callable[[], Any]) -> None:
    """Run a corpus job; print its summary; exit 1 if images failed."""
    summary = job()
    for line in summary.lines():
        typer.echo(line)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED)


def rescore(
    pipeline: Annotated[str, typer.Option(help="Pipeline to render and score through.")],
    model: Annotated[
        str | None,
        typer.Option(help="Registered model: NAME or NAME@VERSION; default: the active model."),
    ] = None,
    where: Where = None,
    engine: Annotated[str, typer.Option(help="local (process pool) or ray (Ray Data).")] = "local",
    workers: Annotated[
        int, typer.Option(help="Worker processes (local; 0 = this process) or Ray actors.")
    ] = 2,
    batch_size: Annotated[
        int,
        typer.Option(
            help="Images per batch: read, rendered, stored and recorded together "
            "(onnxruntime on the CPU runs 4 model inputs at a time).",
            min=1,
        ),
    ] = 16,
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda (no fallback) (IMGEST_DEVICE).")
    ] = None,
    decode: Annotated[
        str,
        typer.Option(
            help="Where originals' JPEGs are decoded: cpu, or cuda (nvImageCodec on the GPU; "
            "no fallback; untested on a GPU, docs/intermediate.md)."
        ),
    ] = "cpu",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (auto, ray://...); default: local.")
    ] = None,
    pin: Annotated[
        bool,
        typer.Option(
            help="Bind each worker (and each Ray actor on this machine) to a core of its own "
            "when there are enough cores; --no-pin where other work shares the cores."
        ),
    ] = True,
    storage: StorageOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Score every image that lacks this model's prediction through this pipeline (resumable)."""
    from imgest.jobs import rescore as job
    from imgest.jobs.selection import parse_where

    settings = load_existing(storage_url=storage, catalog_url=catalog)
    _choice("--engine", engine, ("local", "ray"))
    _choice("--decode", decode, ("cpu", "cuda"))
    summarize(
        lambda: job.run(
            settings,
            model=model,
            pipeline=pipeline,
            where=parse_where(where or []),
            engine="ray" if engine == "ray" else "local",
            workers=workers,
            batch_size=batch_size,
            decode=decode,
            device=device,
            ray_address=ray_address,
            progress=True,
            pin=pin,
        )
    )


def compare(
    a: Annotated[
        str, typer.Argument(help="Run A: MODEL@PIPELINE, or MODEL:VERSION@PIPELINE:VERSION.")
    ],
    b: Annotated[str, typer.Argument(help="Run B, as A.")],
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = Path(
        "compare.html"
    ),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the JSON summary here ('-': stdout).")
    ] = None,
    where: Where = None,
    top: Annotated[int, typer.Option(help="Classes in the change matrix.", min=1)] = 10,
    thumbnails: Annotated[int, typer.Option(help="Disagreements shown.", min=0)] = 48,
    storage: StorageOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Compare two runs: agreement, change matrix, confidence, accuracy, disagreements."""
    from imgest.jobs.compare import compare as run_compare
    from imgest.jobs.compare import write_json
    from imgest.jobs.report import render_html
    from imgest.jobs.selection import parse_where

    settings = load_existing(storage_url=storage, catalog_url=catalog)
    result = run_compare(settings, a, b, where=parse_where(where or []), thumbnails=thumbnails)
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


def export(
    out: Annotated[Path, typer.Argument(help="Output directory (created; reruns resume).")],
    pipeline: Annotated[str, typer.Option(help="Pipeline whose renditions are exported.")],
    format: Annotated[str, typer.Option(help="imagefolder or webdataset.")] = "imagefolder",
    model: Annotated[
        str | None,
        typer.Option(
            help="Model NAME or NAME@VERSION whose top-1 labels images without ground truth."
        ),
    ] = None,
    where: Where = None,
    shard_size: Annotated[int, typer.Option(help="Samples per WebDataset shard.", min=1)] = 1000,
    min_score: Annotated[
        float,
        typer.Option(
            help="Leave out images without ground truth whose top-1 score is below this "
            "(counted in the summary).",
            min=0.0,
            max=1.0,
        ),
    ] = MIN_SCORE,
    split: Annotated[
        str | None,
        typer.Option(
            help="Split into named shares, e.g. train=0.8,val=0.1,test=0.1: OUT/<name>/..., "
            "each near-duplicate group inside one split, per-split class counts printed and "
            "in split.json."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the split: the same seed, the same split.")
    ] = 0,
    storage: StorageOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Write a labelled training set of one pipeline's renditions (streamed, resumable).

    Ground truth that names a model class by one of its synonyms ("tabby cat") is exported
    as that class; classes are named by their first synonym ("tabby"). With --split, a
    group's split is a hash of the seed and the group: images added later never move
    existing ones to another split."""
    from imgest.jobs import export as job
    from imgest.jobs.exportdir import Split
    from imgest.jobs.selection import parse_where

    shares = None if split is None else Split.parse(split, seed)
    settings = load_existing(storage_url=storage, catalog_url=catalog)
    _choice("--format", format, ("imagefolder", "webdataset"))
    summarize(
        lambda: job.run(
            settings,
            pipeline=pipeline,
            out=out,
            format="webdataset" if format == "webdataset" else "imagefolder",
            model=model,
            where=parse_where(where or []),
            shard_size=shard_size,
            min_score=min_score,
            progress=True,
            split=shares,
        )
    )


def register(app: typer.Typer) -> None:
    """Add these commands to the `imgest` command (in --help order)."""
    app.command()(gc)
    app.command()(fsck)
    app.command()(rescore)
    app.command()(compare)
    app.command()(export)
