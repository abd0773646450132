"""`imgest models`, `imgest pipelines` and `imgest label`: the registry and ground truth."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from imgest.cli_options import fail, load, load_existing
from imgest.exits import EXIT_FAILED

T = TypeVar("T")

models_app = typer.Typer(help="The model registry (catalog + blob storage).", no_args_is_help=True)
pipelines_app = typer.Typer(help="Named, versioned pipelines.", no_args_is_help=True)


def _with_registry(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run `fn(registry)` on the configured catalog and store; errors exit 2 with a message."""
    import anyio

    from imgest.runtime import Runtime

    settings = load_existing()

    async def run() -> T:
        async with Runtime(settings).open(migrate_schema=True) as opened:
            await opened.registry.ensure_default(settings.model_dir)
            return await fn(opened.registry)

    try:
        return anyio.run(run)
    except (ValueError, OSError) as exc:
        raise fail(exc) from None


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
            raise fail(exc) from None
        onnx = file
    data = onnx.read_bytes()
    entry = _with_registry(lambda r: r.add(data, spec, activate=activate))
    typer.echo(
        f"registered {entry.ref}"
        + (" (active)" if entry.active else "")
        + f", {_embedding_text(entry.embedding_dim)}"
    )


def _embedding_text(dim: int | None) -> str:
    """How `imgest models` says whether a model gives embeddings."""
    return f"embedding {dim}-d" if dim else "no embedding"


@models_app.command("list")
def models_list() -> None:
    """Every registered model version; * marks the active one."""

    async def run(registry: Any) -> list[Any]:
        return list(registry.list())

    for e in _with_registry(run):
        w, h = e.spec.input.size
        typer.echo(
            f"{'*' if e.active else ' '} {e.name}@{e.version[:12]}  {w}x{h} {e.spec.input.layout}"
            f"  {len(e.spec.labels)} classes  {_embedding_text(e.embedding_dim)}"
            f"  {e.created_at:%Y-%m-%d %H:%M}"
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
        raise fail(ValueError(f"no pipeline {name!r}; known: {', '.join(sorted(pipelines))}"))
    p = pipelines[name]
    typer.echo(json.dumps({"name": p.name, "version": p.version, "spec": p.spec}, indent=2))


def _pipelines() -> dict[str, Any]:
    """Built-ins sized for the active model's input (as the server sizes them), plus the
    pipelines file."""
    from imgest.imaging.pipelines import load_pipelines

    async def active(registry: Any) -> Any:
        return registry.active()

    settings = load()
    spec = _with_registry(active).spec.input
    return load_pipelines(settings, size=spec.size, crop=spec.crop)


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
    settings = load_existing()
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


def register(app: typer.Typer) -> None:
    """Add these commands to the `imgest` command (in --help order)."""
    app.command("label")(label)
    app.add_typer(models_app, name="models")
    app.add_typer(pipelines_app, name="pipelines")
