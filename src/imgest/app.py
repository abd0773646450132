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
from imgest.imaging.limits import ImageLimits
from imgest.imaging.pipeline import builtin_pipelines
from imgest.ingest import IngestService
from imgest.scoring.batcher import MicroBatcher
from imgest.scoring.model import BUNDLED_DIR, Model
from imgest.storage.registry import open_store

log = logging.getLogger(__name__)


def upload_limits(settings: Settings) -> UploadLimits:
    """The streaming caps from settings (same names)."""
    names = [f.name for f in dataclasses.fields(UploadLimits)]
    return UploadLimits(**{name: getattr(settings, name) for name in names})


def create_app(settings: Settings, *, model: Model | None = None) -> FastAPI:
    """The ASGI app; resources open at start-up and close at shutdown.

    `model` lets an embedding program (or a test) share one loaded model between apps.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cores = os.cpu_count() or 1
        # Opening the store sweeps stale temp files and migrating touches the database:
        # blocking work, kept off the event loop.
        store = await anyio.to_thread.run_sync(open_store, settings.storage_url)
        catalog = await anyio.to_thread.run_sync(lambda: Catalog.open(settings.catalog_url))
        scorer = model
        if scorer is None:
            scorer = await anyio.to_thread.run_sync(
                lambda: Model(
                    settings.model_dir or BUNDLED_DIR,
                    threads=settings.inference_threads,
                    device=settings.device,
                )
            )
        pipelines = builtin_pipelines(
            size=scorer.input.size, crop=scorer.input.crop, background=settings.background
        )
        pipeline = pipelines[settings.pipeline]
        batcher = MicroBatcher(
            scorer,
            top_k=settings.top_k,
            max_size=settings.batch_max_size,
            max_wait=settings.batch_max_wait_ms / 1000.0,
        )
        await batcher.start()
        app.state.settings = settings
        app.state.store = store
        app.state.catalog = catalog
        app.state.batcher = batcher
        app.state.links = Links(settings.public_url)
        app.state.upload_limits = upload_limits(settings)
        app.state.ingest = IngestService(
            store=store,
            catalog=catalog,
            batcher=batcher,
            pipeline=pipeline,
            limits=ImageLimits(max_pixels=settings.max_pixels, max_frames=settings.max_frames),
            cpu=CapacityLimiter(settings.workers or cores),
        )
        app.state.corpus = Corpus(
            store=store, catalog=catalog, current_pipelines={pipeline.name: pipeline.version}
        )
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
            await batcher.stop()
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
