"""Naming the model and pipeline of a corpus job: from the command line to loaded objects."""

from __future__ import annotations

from pathlib import Path

from imgest.config import Settings
from imgest.errors import JobError
from imgest.imaging.pipeline import Pipeline, builtin_pipelines
from imgest.scoring.model import BUNDLED_DIR, Model


def resolve_model(settings: Settings, name: str | None, *, device: str = "cpu") -> Model:
    """The model `name` names (a model directory, or the configured/bundled model's name),
    loaded with one onnxruntime thread on `device`."""
    configured = settings.model_dir or BUNDLED_DIR
    if name is None:
        return Model(configured, threads=1, device=device)
    if Path(name).is_dir():
        return Model(Path(name), threads=1, device=device)
    model = Model(configured, threads=1, device=device)
    wanted, _, version = name.partition("@")
    if wanted != model.name or not model.version.startswith(version):
        raise JobError(f"unknown model {name!r}; known: {model.name}@{model.version[:12]}")
    return model


def resolve_pipeline(settings: Settings, name: str, model: Model) -> Pipeline:
    """The pipeline called `name`, sized for `model`'s input."""
    pipelines = builtin_pipelines(
        size=model.input.size, crop=model.input.crop, background=settings.background
    )
    if name not in pipelines:
        raise JobError(f"unknown pipeline {name!r}; known: {', '.join(sorted(pipelines))}")
    return pipelines[name]
