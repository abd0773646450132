"""Naming the model and pipeline of a corpus job: registry references to loaded objects."""

from __future__ import annotations

from imgest.config import Settings
from imgest.errors import JobError, UnknownModel
from imgest.imaging.pipeline import Pipeline
from imgest.imaging.pipelines import load_pipelines
from imgest.scoring.registry import ModelRegistry, RegisteredModel


async def resolve_model(
    registry: ModelRegistry, settings: Settings, ref: str | None
) -> RegisteredModel:
    """The registered model `ref` (NAME[@VERSION]) names, or the active one for None.

    A catalog no server has opened yet gets the default model registered first, as a
    server's first start would.
    """
    active = await registry.ensure_default(settings.model_dir)
    if ref is None:
        return active
    try:
        return registry.resolve(ref)
    except UnknownModel as exc:
        raise JobError(exc.detail) from None


def resolve_pipeline(settings: Settings, name: str, model: RegisteredModel) -> Pipeline:
    """The pipeline called `name` (built in or from the pipelines file), sized for `model`."""
    size, crop = model.spec.input.size, model.spec.input.crop
    pipelines = load_pipelines(settings, size=size, crop=crop)
    if name not in pipelines:
        where = (
            f"the pipelines file {settings.pipelines_file}"
            if settings.pipelines_file
            else "a pipelines file named by IMGEST_PIPELINES_FILE (unset)"
        )
        raise JobError(
            f"unknown pipeline {name!r}; known: {', '.join(sorted(pipelines))}. "
            f"Declare others in {where}: see docs/model.md"
        )
    pipeline = pipelines[name]
    if pipeline.input_size != size:
        raise JobError(
            f"pipeline {name} makes {pipeline.input_size} model inputs, "
            f"model {model.ref} takes {size}"
        )
    return pipeline
