"""`imgest upload` and `imgest import`: files to a running server through the Python client."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from imgest.errors import MissingDependency
from imgest.exits import EXIT_FAILED

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="IMGEST_URL",
        help="Server base URL; else IMGEST_URL, else http://127.0.0.1:${IMGEST_PORT:-8000}.",
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
UNREACHABLE_HELP = (
    " A server that cannot be reached stops the run after about 5 s (exit 3); "
    "rerun to continue: stored files are skipped."
)


def upload_files(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    tag: TagOption = None,
    description: DescriptionOption = None,
    label: Annotated[
        str | None, typer.Option(help="Ground truth for every file (form field 'label').")
    ] = None,
    concurrency: ConcurrencyOption = 4,
    retries: RetriesOption = 8,
    backoff: BackoffOption = 0.5,
    skip_existing: SkipOption = True,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the summary and each file's full server answer as JSON."
        ),
    ] = False,
) -> None:
    """Upload image files: prints each one's status, id and top-1 prediction.

    Exit 1 if any was rejected or failed. A server that cannot be reached stops the run
    after about 5 s (exit 3).
    """
    from imgest.bulk import Job

    jobs = [Job(p, tuple(tag or ()), label) for p in paths]
    _bulk(jobs, Sending.of(ctx.params), files=True)  # url ... json_out, read once there


def import_folder(
    ctx: typer.Context,
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
    """Import every image under DIRECTORY (recursive); rerunning skips what is stored.

    Exit 1 if any file was rejected or failed. A server that cannot be reached stops the run
    after about 5 s (exit 3).
    """
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
    _bulk(jobs, Sending.of(ctx.params))  # url ... json_out, read once there


@dataclass(frozen=True)
class Sending:
    """The options upload and import share: where to send the files, and how."""

    url: str | None
    api_key: str | None
    description: str | None
    concurrency: int
    retries: int
    backoff: float
    skip_existing: bool
    json_out: bool

    @classmethod
    def of(cls, params: dict[str, Any]) -> Sending:
        """Those options out of a command's parameters (`typer.Context.params`)."""
        return cls(**{f.name: params[f.name] for f in fields(cls)})


def similar(
    image: Annotated[str | None, typer.Argument(help="A stored image's id (sha256).")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Search by this query image instead (not stored).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many, at most.")] = 10,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    json_out: JsonOption = False,
) -> None:
    """The stored images most similar to one (by id) or to a query image (--file), through
    the HTTP API: one `ID SCORE` line each, best first."""
    if (image is None) == (file is None):
        raise typer.BadParameter("give an image ID or --file FILE (one of them)")
    try:
        from imgest.client import Client
    except ImportError as exc:  # httpx and tenacity come with the `client` extra
        raise MissingDependency(f"{exc.name} is missing: pip install 'imgest[client]'") from None
    with Client(url, api_key=api_key) as client:
        if file is not None:
            found = client.similar_to(file, k=k)
        else:
            assert image is not None
            found = client.similar(image.lower(), k=k)
    if json_out:
        typer.echo(found.model_dump_json())
        return
    for item in found.items:
        typer.echo(f"{item.id}  {item.score:.4f}")


def _bulk(jobs: list[Any], sending: Sending, *, files: bool = False) -> None:
    import asyncio

    try:
        from imgest import bulk
        from imgest.client import AsyncClient, RetryPolicy
        from imgest.console import progress, render_summary
    except ImportError as exc:  # httpx, tenacity and rich come with the `client` extra
        raise MissingDependency(f"{exc.name} is missing: pip install 'imgest[client]'") from None

    s = sending
    retry = RetryPolicy(attempts=s.retries, initial=s.backoff)

    async def go() -> bulk.Summary:
        async with AsyncClient(
            s.url, api_key=s.api_key, retry=retry, max_connections=s.concurrency
        ) as client:
            with progress(len(jobs)) as advance:
                return await bulk.run(
                    client,
                    jobs,
                    concurrency=s.concurrency,
                    description=s.description,
                    skip_existing=s.skip_existing,
                    keep_answers=files,
                    on_done=advance,
                )

    summary = asyncio.run(go())
    if summary.unreachable is None or summary.outcomes:
        render_summary(summary, as_json=s.json_out, files=files)
    if summary.unreachable is not None:
        raise summary.unreachable  # exit 3 (imgest.exits), naming the URL
    if not summary.ok:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add these commands to the `imgest` command (in --help order)."""
    app.command("upload")(upload_files)
    app.command("similar")(similar)
    app.command("import")(import_folder)
