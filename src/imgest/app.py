"""create_app(settings): wiring only: services over a Runtime's resources, and the routes."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from anyio import CapacityLimiter
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from imgest import __version__
from imgest.admission import Admission, AdmissionLimits
from imgest.api import apidocs, auth, health, images, metrics, problems, similar, ui, upload
from imgest.api.guard import DOC_PATHS, RequestGuard
from imgest.api.idempotency import IdempotencyGate
from imgest.api.images import Links
from imgest.api.multipart import UploadLimits
from imgest.api.observe import RequestObserver
from imgest.api.origin import OriginGuard
from imgest.catalog.idempotency import IdempotencyKeys
from imgest.catalog.keys import KeyStore
from imgest.config import Settings, from_settings
from imgest.corpus import Corpus
from imgest.duplicates import GroupCache, LiveGroups
from imgest.errors import ConfigError
from imgest.ingest import IngestService
from imgest.metrics import Gauges
from imgest.rendering import Renderer
from imgest.runtime import Resources, Runtime
from imgest.scoring.model import Model
from imgest.scoring.scorers import Scorers
from imgest.similarity.live import NearDuplicatePolicy, SimilarImages

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, model: Model | None = None) -> FastAPI:
    """The ASGI app; resources open at start-up and close at shutdown.

    `model` lets an embedding program (or a test) share one loaded model between apps: it
    is used whenever the registry asks for its version. Raises ConfigError for an unknown
    pipeline or a bad pipelines file.
    """

    runtime = Runtime(settings)
    pipelines = runtime.pipelines()  # a bad pipelines file fails here, before serving
    if settings.pipeline not in pipelines:
        raise ConfigError(
            f"IMGEST_PIPELINE (pipeline): no pipeline {settings.pipeline!r}; "
            f"known: {', '.join(sorted(pipelines))}"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.open(migrate_schema=True) as opened:
            await serving(app, runtime, opened, model)
            try:
                yield
            finally:
                app.state.metrics.gauges = None
                await app.state.scorers.stop()

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
    app.state.runtime = runtime
    app.state.metrics = runtime.metrics
    # The guard has checked the key before the app runs; this only documents Bearer auth.
    guarded = [Depends(auth.documented)]
    app.include_router(upload.router, dependencies=guarded)
    app.include_router(images.router, dependencies=guarded)
    app.include_router(similar.router, dependencies=guarded)
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


async def serving(app: FastAPI, runtime: Runtime, opened: Resources, model: Model | None) -> None:
    """Build the services over the runtime's opened resources and put them on `app.state`.

    Every service (readiness probes included) sees the bounded store: a hung backend -> 503.
    """
    settings = runtime.settings
    store, catalog = opened.store, opened.catalog
    cpu_threads = settings.workers or os.cpu_count() or 1
    scoring = await runtime.scoring(opened.registry, model)
    scorers, pipeline = scoring.scorers, scoring.pipeline
    renderer = Renderer(runtime.limits, CapacityLimiter(cpu_threads), runtime.intermediate)
    app.state.store = store
    app.state.catalog = catalog
    app.state.scorers = scorers
    app.state.batcher = await scorers.start()  # the active model's, at start-up
    app.state.links = Links(settings.public_url)
    app.state.upload_limits = from_settings(UploadLimits, settings)
    app.state.similar = similar = SimilarImages(catalog, store, settings.ann_min_vectors)
    await similar.index_for(app.state.batcher.model)  # the active model's, loaded now
    app.state.ingest = IngestService(
        store=store,
        catalog=catalog,
        scorers=scorers,
        pipeline=pipeline,
        renderer=renderer,
        metrics=app.state.metrics,
        similar=similar,
        near=NearDuplicatePolicy(
            settings.near_duplicates,
            settings.near_duplicate_threshold,
            settings.near_duplicates_max,
        ),
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
    app.state.metrics.gauges = live_gauges(app.state.admission, renderer, scorers)
    app.state.corpus = Corpus(
        store=store,
        catalog=catalog,
        pipelines=scoring.pipelines,
        renderer=renderer,
        signed_url_ttl=timedelta(seconds=settings.signed_url_ttl_s),
    )
    scorer = app.state.batcher.model
    live_groups = LiveGroups(catalog, settings)
    app.state.groups = GroupCache(lambda: live_groups(scorer.version))
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


def live_gauges(admission: Admission, renderer: Renderer, scorers: Scorers) -> Gauges:
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
        cpu_busy=lambda: int(renderer.cpu.borrowed_tokens),
        cpu_waiting=lambda: renderer.cpu.statistics().tasks_waiting,
        scoring_queue=lambda: sum(s.queued for s in scorers.batch_stats().values()),
        batch_sizes=batch_sizes,
    )
