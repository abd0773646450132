"""create_app(settings): wiring only (store, catalog, model, services, routes)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI

from imgest import __version__
from imgest.api import health, images, problems, upload
from imgest.api.images import Links
from imgest.api.multipart import UploadLimits
from imgest.catalog.repo import Catalog
from imgest.config import Settings
from imgest.corpus import Corpus
from imgest.errors import ConfigError
from imgest.imaging.limits import ImageLimits
from imgest.imaging.pipeline import Pipeline
from imgest.imaging.pipelines import load_pipelines
from imgest.ingest import IngestService
from imgest.scoring.model import Model
from imgest.scoring.registry import ModelRegistry
from imgest.scoring.scorers import Scorers
from imgest.storage.base import BlobStore
from imgest.storage.registry import open_store

log = logging.getLogger(__name__)


def upload_limits(settings: Settings) -> UploadLimits:
    """The streaming caps from settings (same names)."""
    names = [f.name for f in dataclasses.fields(UploadLimits)]
    return UploadLimits(**{name: getattr(settings, name) for name in names})


async def _scoring(
    settings: Settings, catalog: Catalog, store: BlobStore, model: Model | None
) -> tuple[Scorers, Pipeline, dict[str, Pipeline]]:
    """The registry-backed scorers and the pipelines sized for the active model."""
    registry = ModelRegistry(catalog, store)
    active = await registry.ensure_default(settings.model_dir)
    scorers = Scorers(
        registry,
        top_k=settings.top_k,
        max_size=settings.batch_max_size,
        max_wait=settings.batch_max_wait_ms / 1000.0,
        max_queue=settings.batch_max_queue,
        threads=settings.inference_threads,
        device=settings.device,
        active_ttl=settings.active_model_ttl_s,
        preloaded=model,
    )
    spec = active.spec.input
    pipelines = load_pipelines(settings, size=spec.size, crop=spec.crop)
    pipeline = pipelines[settings.pipeline]
    if pipeline.input_size != spec.size:
        raise ConfigError(
            f"IMGEST_PIPELINE (pipeline): {pipeline.name} makes {pipeline.input_size} model "
            f"inputs, the active model {active.ref} takes {spec.size}"
        )
    return scorers, pipeline, pipelines


def create_app(settings: Settings, *, model: Model | None = None) -> FastAPI:
    """The ASGI app; resources open at start-up and close at shutdown.

    `model` lets an embedding program (or a test) share one loaded model between apps: it
    is used whenever the registry asks for its version. Raises ConfigError for an unknown
    pipeline or a bad pipelines file.
    """

    pipelines = load_pipelines(settings)  # a bad pipelines file fails here, before serving
    if settings.pipeline not in pipelines:
        raise ConfigError(
            f"IMGEST_PIPELINE (pipeline): no pipeline {settings.pipeline!r}; "
            f"known: {', '.join(sorted(pipelines))}"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cores = os.cpu_count() or 1
        # Opening the store sweeps stale temp files and migrating touches the database:
        # blocking work, kept off the event loop.
        store = await anyio.to_thread.run_sync(open_store, settings.storage_url)
        catalog = await anyio.to_thread.run_sync(lambda: Catalog.open(settings.catalog_url))
        scorers, pipeline, configured = await _scoring(settings, catalog, store, model)
        limits = ImageLimits(max_pixels=settings.max_pixels, max_frames=settings.max_frames)
        cpu = CapacityLimiter(settings.workers or cores)
        app.state.settings = settings
        app.state.store = store
        app.state.catalog = catalog
        app.state.scorers = scorers
        app.state.batcher = await scorers.start()  # the active model's, at start-up
        app.state.links = Links(settings.public_url)
        app.state.upload_limits = upload_limits(settings)
        app.state.ingest = IngestService(
            store=store,
            catalog=catalog,
            scorers=scorers,
            pipeline=pipeline,
            limits=limits,
            cpu=cpu,
        )
        app.state.corpus = Corpus(
            store=store, catalog=catalog, pipelines=configured, limits=limits, cpu=cpu
        )
        scorer = app.state.batcher.model
        log.info(
            "imgest %s ready: storage=%s catalog=%s model=%s@%s pipeline=%s@%s",
            __version__,
            store.url,
            catalog.engine.url.render_as_string(hide_password=True),
            scorer.name,
            scorer.version[:12],
            pipeline.name,
            pipeline.version,
        )
        try:
            yield
        finally:
            await scorers.stop()
            await store.close()
            catalog.close()

    app = FastAPI(
        title="imgest",
        version=__version__,
        summary="Photo ingest for image-recognition networks.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(upload.router)
    app.include_router(images.router)
    app.include_router(health.router)
    return app
