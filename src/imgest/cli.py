"""The `imgest` command: a thin Typer layer over the library.

Expected failures are not handled here one by one: they escape as exceptions and
`imgest.exits` turns each into its exit code and one line on stderr (the table is in
`imgest --help` and docs/cli.md).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from imgest import __version__
from imgest.config import Settings, load_settings
from imgest.errors import InvalidParameter, MissingDependency
from imgest.exits import EXIT_FAILED, EXIT_USAGE, ImgestGroup, epilog
from imgest.labels import MIN_SCORE

T = TypeVar("T")

if TYPE_CHECKING:
    from imgest.catalog.keys import KeyStore
    from imgest.catalog.repo import Catalog
    from imgest.storage.base import BlobMeta, BlobStore

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


StorageOption = Annotated[
    str | None,
    typer.Option("--storage", help="Blob store URL or directory (IMGEST_STORAGE_URL)."),
]
CatalogOption = Annotated[
    str | None, typer.Option("--catalog", help="Catalog SQLAlchemy URL (IMGEST_CATALOG_URL).")
]


def _settings(**overrides: Any) -> Settings:
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _existing(**overrides: Any) -> Settings:
    """Settings whose catalog and blob directory must exist already (CatalogNotFound if not)."""
    from imgest.locations import require_existing

    settings = _settings(**overrides)
    require_existing(settings)
    return settings


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

    settings = _settings(
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

    settings = _settings(storage_url=storage, catalog_url=catalog)
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

    settings = _settings(catalog_url=catalog)
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

    shown = _settings().model_dump(mode="json")
    shown["storage_url"] = redact(shown["storage_url"])  # keys stay out of terminals and logs
    shown["catalog_url"] = redact_url(shown["catalog_url"])
    typer.echo(json.dumps(shown, indent=2))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


# --- models, pipelines, labels (issue 4) ---------------------------------------------------

models_app = typer.Typer(help="The model registry (catalog + blob storage).", no_args_is_help=True)
pipelines_app = typer.Typer(help="Named, versioned pipelines.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(pipelines_app, name="pipelines")


def _fail(exc: Exception) -> InvalidParameter:
    """A library ValueError/OSError about what the user gave, as a usage error (exit 2)."""
    return InvalidParameter(str(exc))


def _with_registry(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run `fn(registry)` on the configured catalog and store; errors exit 2 with a message."""
    import anyio

    from imgest.runtime import Runtime

    settings = _existing()

    async def run() -> T:
        async with Runtime(settings).open(migrate_schema=True) as opened:
            await opened.registry.ensure_default(settings.model_dir)
            return await fn(opened.registry)

    try:
        return anyio.run(run)
    except (ValueError, OSError) as exc:
        raise _fail(exc) from None


def _floats(raw: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in raw.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{what} must be three comma-separated numbers") from None
    if len(values) != 3:
        raise typer.BadParameter(f"{what} must be three comma-separated numbers")
    return values


@models_app.command("add")
def models_add(
    file: Annotated[Path, typer.Argument(help="The .onnx file (or a directory with model.toml).")],
    name: Annotated[str | None, typer.Option(help="Model name.")] = None,
    labels: Annotated[Path | None, typer.Option(help="One label per line.")] = None,
    size: Annotated[str, typer.Option(help="Input WIDTHxHEIGHT.")] = "224x224",
    layout: Annotated[str, typer.Option(help="nchw or nhwc.")] = "nchw",
    mean: Annotated[str, typer.Option(help="Mean R,G,B (0..255).")] = "127,127,127",
    std: Annotated[str, typer.Option(help="Std R,G,B (0..255).")] = "128,128,128",
    crop: Annotated[float, typer.Option(help="Centre-crop fraction.")] = 0.875,
    output: Annotated[str, typer.Option(help="logits or probabilities.")] = "logits",
    activate: Annotated[bool, typer.Option(help="Make it the active model.")] = False,
) -> None:
    """Register an ONNX classifier; its input spec is checked against the graph."""
    from imgest.scoring.model import InputSpec, ModelSpec, read_model_dir

    if file.is_dir():
        spec, onnx = read_model_dir(file)
    else:
        if name is None or labels is None:
            raise typer.BadParameter("--name and --labels are required for an .onnx file")
        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise typer.BadParameter("--size is WIDTHxHEIGHT, e.g. 224x224") from None
        if output not in ("logits", "probabilities"):
            raise typer.BadParameter("--output is logits or probabilities")
        try:
            spec = ModelSpec(
                name=name,
                input=InputSpec.from_dict(
                    {
                        "name": "",
                        "size": [width, height],
                        "layout": layout,
                        "mean": _floats(mean, "--mean"),
                        "std": _floats(std, "--std"),
                        "crop": crop,
                    }
                ),
                labels=tuple(labels.read_text().splitlines()),
                output="logits" if output == "logits" else "probabilities",
            )
        except (ValueError, OSError) as exc:
            raise _fail(exc) from None
        onnx = file
    data = onnx.read_bytes()
    entry = _with_registry(lambda r: r.add(data, spec, activate=activate))
    typer.echo(f"registered {entry.ref}" + (" (active)" if entry.active else ""))


@models_app.command("list")
def models_list() -> None:
    """Every registered model version; * marks the active one."""

    async def run(registry: Any) -> list[Any]:
        return list(registry.list())

    for e in _with_registry(run):
        w, h = e.spec.input.size
        typer.echo(
            f"{'*' if e.active else ' '} {e.name}@{e.version[:12]}  {w}x{h} {e.spec.input.layout}"
            f"  {len(e.spec.labels)} classes  {e.created_at:%Y-%m-%d %H:%M}"
        )


@models_app.command("activate")
def models_activate(ref: Annotated[str, typer.Argument(help="NAME[@VERSION]")]) -> None:
    """Score uploads with this model (every server picks it up within active_model_ttl_s)."""

    async def run(registry: Any) -> Any:
        return registry.activate(ref)

    typer.echo(f"active: {_with_registry(run).ref}")


@models_app.command("remove")
def models_remove(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION]")],
    force: Annotated[bool, typer.Option(help="Remove even the active model.")] = False,
) -> None:
    """Unregister a model version (its predictions stay in the catalog)."""
    entry = _with_registry(lambda r: r.remove(ref, force=force))
    typer.echo(f"removed {entry.ref}")


@pipelines_app.command("list")
def pipelines_list() -> None:
    """Every configured pipeline with its version and rendition size."""
    for p in _pipelines().values():
        (w, h), (rows, cols) = p.size, p.grid
        tiles = f"  tiles {rows}x{cols} ({p.aggregate})" if (rows, cols) != (1, 1) else ""
        typer.echo(f"{p.name}@{p.version}  {w}x{h}{tiles}")


@pipelines_app.command("show")
def pipelines_show(name: Annotated[str, typer.Argument(help="Pipeline name.")]) -> None:
    """A pipeline's canonical spec (what its version hashes) as JSON."""
    pipelines = _pipelines()
    if name not in pipelines:
        raise _fail(ValueError(f"no pipeline {name!r}; known: {', '.join(sorted(pipelines))}"))
    p = pipelines[name]
    typer.echo(json.dumps({"name": p.name, "version": p.version, "spec": p.spec}, indent=2))


def _pipelines() -> dict[str, Any]:
    """Built-ins sized for the active model's input (as the server sizes them), plus the
    pipelines file."""
    from imgest.imaging.pipelines import load_pipelines

    async def active(registry: Any) -> Any:
        return registry.active()

    settings = _settings()
    spec = _with_registry(active).spec.input
    return load_pipelines(settings, size=spec.size, crop=spec.crop)


@app.command("label")
def label(
    image: Annotated[str | None, typer.Argument(help="Image id (sha256).")] = None,
    value: Annotated[str | None, typer.Argument(help="Its ground truth (a class name).")] = None,
    clear: Annotated[bool, typer.Option(help="Remove its ground truth instead.")] = False,
    from_csv: Annotated[
        Path | None,
        typer.Option(
            help="CSV of image_id,label rows (a header row is skipped).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
) -> None:
    """Set ground truth: one image, or many from a CSV."""
    import csv

    from imgest.labels import check_label
    from imgest.runtime import Runtime

    pairs: list[tuple[str, str | None]] = []
    if from_csv is not None:
        with from_csv.open(newline="") as fh:
            for row in csv.reader(fh):
                if len(row) >= 2 and row[0].strip().lower() not in ("image_id", "id", "image"):
                    pairs.append((row[0].strip().lower(), row[1]))
    elif image is not None and (value is not None or clear):
        pairs.append((image.lower(), None if clear else value))
    else:
        raise typer.BadParameter("give IMAGE LABEL, IMAGE --clear, or --from-csv FILE")
    settings = _existing()
    catalog = Runtime(settings).open_catalog()
    missing = 0
    try:
        for image_id, raw in pairs:
            checked = None if raw is None else check_label(raw)
            if catalog.update_image(image_id, label=checked) is None:
                typer.echo(f"imgest: no image {image_id}", err=True)
                missing += 1
    finally:
        catalog.close()
    typer.echo(f"labelled {len(pairs) - missing} image(s)")
    if missing:
        raise typer.Exit(EXIT_FAILED)


# --- upload and import through the HTTP API (issue 5) ----------------------------------------

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


@app.command("upload")
def upload_files(
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
    _bulk(
        jobs,
        url=url,
        api_key=api_key,
        description=description,
        concurrency=concurrency,
        policy=(retries, backoff),
        skip_existing=skip_existing,
        json_out=json_out,
        files=True,
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
    files: bool = False,
) -> None:
    import asyncio

    try:
        from imgest import bulk
        from imgest.client import AsyncClient, RetryPolicy
        from imgest.console import progress, render_summary
    except ImportError as exc:  # httpx, tenacity and rich come with the `client` extra
        raise MissingDependency(f"{exc.name} is missing: pip install 'imgest[client]'") from None

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
                    keep_answers=files,
                    on_done=advance,
                )

    summary = asyncio.run(go())
    if summary.unreachable is None or summary.outcomes:
        render_summary(summary, as_json=json_out, files=files)
    if summary.unreachable is not None:
        raise summary.unreachable  # exit 3 (imgest.exits), naming the URL
    if not summary.ok:
        raise typer.Exit(EXIT_FAILED)


# --- API keys (issue 6) ----------------------------------------------------------------------
keys_app = typer.Typer(help="Create, list and revoke API keys (stored hashed in the catalog).")
app.add_typer(keys_app, name="keys")


def _key_store(catalog: str | None) -> KeyStore:
    from imgest.catalog.keys import KeyStore
    from imgest.locations import require_existing
    from imgest.runtime import Runtime

    settings = _settings(catalog_url=catalog)
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
        raise _fail(exc) from None
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


# --- maintenance jobs (issue 3) ---------------------------------------------------------


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


@app.command()
def gc(
    grace: Annotated[
        str, typer.Option(help="Keep unreferenced blobs younger than this (90s, 30m, 1h, 2d).")
    ] = "1h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    storage: StorageOption = None,
    catalog: CatalogOption = None,
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
    storage: StorageOption = None,
    catalog: CatalogOption = None,
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


def _summarize(job: Callable[[], Any]) -> None:
    """Run a corpus job; print its summary; exit 1 if images failed."""
    summary = job()
    for line in summary.lines():
        typer.echo(line)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
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

    settings = _existing(storage_url=storage, catalog_url=catalog)
    _choice("--engine", engine, ("local", "ray"))
    _choice("--decode", decode, ("cpu", "cuda"))
    _summarize(
        lambda: job.run(
            settings,
            model=model,
            pipeline=pipeline,
            decode=decode,
            where=parse_where(where or []),
            engine="ray" if engine == "ray" else "local",
            workers=workers,
            batch_size=batch_size,
            device=device,
            ray_address=ray_address,
            progress=True,
            pin=pin,
        )
    )


@app.command()
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

    settings = _existing(storage_url=storage, catalog_url=catalog)
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


@app.command()
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
    storage: StorageOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Write a labelled training set of one pipeline's renditions (streamed, resumable).

    Ground truth that names a model class by one of its synonyms ("tabby cat") is exported
    as that class; classes are named by their first synonym ("tabby")."""
    from imgest.jobs import export as job
    from imgest.jobs.selection import parse_where

    settings = _existing(storage_url=storage, catalog_url=catalog)
    _choice("--format", format, ("imagefolder", "webdataset"))
    _summarize(
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
        )
    )


@app.command()
def backfill(
    long_side: Annotated[
        int | None,
        typer.Option(help="The intermediate's long side (IMGEST_INTERMEDIATE; must not be off)."),
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
    settings = _existing(**overrides)
    _summarize(
        lambda: job.run(
            settings,
            where=parse_where(where or []),
            workers=workers,
            batch_size=batch_size,
            progress=True,
        )
    )


# Distributions of `imgest[server]` (pyproject.toml) whose absence means a client-only install.
_SERVER_ONLY = frozenset(
    {"fastapi", "starlette", "uvicorn", "h11", "uvloop", "python_multipart", "multipart", "PIL",
     "pi_heif", "simplejpeg", "numpy", "onnxruntime", "sqlalchemy", "alembic", "jinja2",
     "prometheus_client", "pythonjsonlogger"}
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
