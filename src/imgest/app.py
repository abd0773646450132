"""create_app(settings): wiring only (store, catalog, model, services, routes)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from imgest import __version__
from imgest.admission import Admission, AdmissionLimits
from imgest.api import apidocs, auth, health, images, metrics, problems, ui, upload
from imgest.api.guard import DOC_PATHS, RequestGuard
from imgest.api.idempotency import IdempotencyGate
from imgest.api.images import Links
from imgest.api.multipart import UploadLimits
from imgest.api.observe import RequestObserver
from imgest.api.origin import OriginGuard
from imgest.catalog.db import CatalogOptions
from imgest.catalog.idempotency import IdempotencyKeys
from imgest.catalog.keys import KeyStore
from imgest.catalog.repo import Catalog
from imgest.config import Settings
from imgest.corpus import Corpus
from imgest.errors import ConfigError
from imgest.imaging.limits import ImageLimits
from imgest.imaging.pipeline import Pipeline
from imgest.imaging.pipelines import load_pipelines
from imgest.ingest import IngestService
from imgest.metrics import Gauges, Metrics
from imgest.scoring.model import Model
from imgest.scoring.registry import ModelRegistry
from imgest.scoring.scorers import Scorers
from imgest.storage.base import BlobStore, StoreOptions
from imgest.storage.registry import open_store
from imgest.storage.timeout import TimeoutStore

log = logging.getLogger(__name__)

L = TypeVar("L")


def from_settings(cls: type[L], settings: Settings) -> L:
    """A limits dataclass filled from the settings of the same names."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    return cls(**{name: getattr(settings, name) for name in names})


def upload_limits(settings: Settings) -> UploadLimits:
    """The streaming caps from settings (same names)."""
    return from_settings(UploadLimits, settings)


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


def store_options(settings: Settings) -> StoreOptions:
    """The remote-store request settings."""
    return StoreOptions(timeout_s=settings.storage_timeout_s, retries=settings.storage_retries)


def catalog_options(settings: Settings) -> CatalogOptions:
    """The catalog connection settings (`catalog_<name>` in settings)."""
    names = [f.name for f in dataclasses.fields(CatalogOptions)]
    return CatalogOptions(**{name: getattr(settings, f"catalog_{name}") for name in names})


def open_catalog(settings: Settings, *, migrate_schema: bool = True) -> Catalog:
    """The catalog that settings name, with their connection settings."""
    return Catalog.open(
        settings.catalog_url, options=catalog_options(settings), migrate_schema=migrate_schema
    )


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
        cpu_threads = settings.workers or os.cpu_count() or 1
        # Opening the store sweeps stale temp files and migrating touches the database:
        # blocking work, kept off the event loop.
        store = await anyio.to_thread.run_sync(
            lambda: open_store(settings.storage_url, options=store_options(settings))
        )
        # The services see a store whose every call is bounded (a hung backend -> 503).
        bounded = TimeoutStore(store, settings.storage_timeout_s)
        catalog = await anyio.to_thread.run_sync(lambda: open_catalog(settings))
        scorers, pipeline, configured = await _scoring(settings, catalog, store, model)
        limits = ImageLimits.from_settings(settings)
        cpu = CapacityLimiter(cpu_threads)
        app.state.store = store
        app.state.catalog = catalog
        app.state.scorers = scorers
        app.state.batcher = await scorers.start()  # the active model's, at start-up
        app.state.links = Links(settings.public_url)
        app.state.upload_limits = upload_limits(settings)
        app.state.ingest = IngestService(
            store=bounded,
            catalog=catalog,
            scorers=scorers,
            pipeline=pipeline,
            limits=limits,
            cpu=cpu,
            metrics=app.state.metrics,
        )
        app.state.idempotency = IdempotencyGate(
            IdempotencyKeys(
                catalog,
                ttl=timedelta(seconds=settings.idempotency_ttl_s),
                lock=timedelta(seconds=settings.idempotency_lock_s),
            )
        )
        app.state.keys = KeyStore(catalog)
        admission = from_settings(AdmissionLimits, settings).resolved(cpu_threads)
        app.state.admission = Admission(admission)
        app.state.metrics.gauges = live_gauges(app.state.admission, app.state.ingest, scorers)
        app.state.corpus = Corpus(
            store=bounded,
            catalog=catalog,
            pipelines=configured,
            limits=limits,
            cpu=cpu,
            signed_url_ttl=timedelta(seconds=settings.signed_url_ttl_s),
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
            app.state.metrics.gauges = None
            await scorers.stop()
            await store.close()
            catalog.close()

    docs = settings.api_docs != "off"
    app = FastAPI(
        title="imgest",
        version=__version__,
        summary="Photo ingest for image-recognition networks.",
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url=None,  # /docs and /redoc are served by apidocs, from installed assets (no CDN)
        redoc_url=None,
    )
    assert app.openapi_url is None or app.openapi_url in DOC_PATHS
    problems.install(app)
    if docs:
        apidocs.install(app)
    # Settings and metrics exist before start-up, so the auth dependency, problem answers
    # and middleware can read them from the first request.
    app.state.settings = settings
    app.state.metrics = Metrics()
    # The guard has checked the key before the app runs; this only documents Bearer auth.
    guarded = [Depends(auth.documented)]
    app.include_router(upload.router, dependencies=guarded)
    app.include_router(images.router, dependencies=guarded)
    app.include_router(health.router)
    app.include_router(metrics.router)
    if settings.auth == "off":
        # The pages read the catalog server-side and a browser has no way to send a bearer
        # key, so with API keys on the web UI is not served at all rather than served open.
        ui.install(app)
    # Innermost first: the guard runs inside CORS (preflights need no key, refusals carry
    # the CORS headers) and inside the observer (refusals are logged and counted).
    app.add_middleware(RequestGuard, settings=settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID", "Idempotency-Key"],
            expose_headers=["X-Request-ID", "Retry-After", "ETag", "Idempotent-Replayed"],
            max_age=600,
        )
    # Outside CORS and every route (UI, static files, unmatched paths included), inside the
    # observer so that its refusals are logged and counted.
    app.add_middleware(OriginGuard, settings=settings, metrics=app.state.metrics)
    app.add_middleware(RequestObserver, metrics=app.state.metrics)
    return app


def live_gauges(admission: Admission, ingest: IngestService, scorers: Scorers) -> Gauges:
    """What /metrics reads at scrape time from the running services."""

    def batch_sizes() -> Counter[int]:
        total: Counter[int] = Counter()
        for stats in scorers.batch_stats().values():
            total.update(stats.sizes)
        return total

    return Gauges(
        active_uploads=lambda: admission.active,
        queued_uploads=lambda: admission.queued,
        inflight_bytes=lambda: admission.inflight_bytes,
        cpu_busy=lambda: int(ingest.cpu.borrowed_tokens),
        cpu_waiting=lambda: ingest.cpu.statistics().tasks_waiting,
        scoring_queue=lambda: sum(s.queued for s in scorers.batch_stats().values()),
        batch_sizes=batch_sizes,
    )
