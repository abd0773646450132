"""The composition root: settings in, the store, catalog, models, pipelines and limits out.

Every entry point (the app, each CLI command, each job and each rescore worker, local or Ray)
gets its resources here, so they all honour the same settings: the store is bounded by
`storage_timeout_s` (a hung backend fails as unavailable instead of hanging) and opened with
the storage retries; the catalog gets the connect and statement timeouts and the pool sizes.
Nothing else constructs a BlobStore or a Catalog. A `Runtime` holds only the settings (and the
app's metrics), so a worker in another process builds its own from the same settings object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import anyio.to_thread

from imgest.catalog.db import CatalogOptions
from imgest.catalog.repo import Catalog
from imgest.config import Settings, from_settings
from imgest.errors import ConfigError
from imgest.imaging.intermediate import Intermediate
from imgest.imaging.limits import ImageLimits
from imgest.imaging.pipeline import Pipeline
from imgest.imaging.pipelines import load_pipelines
from imgest.metrics import Metrics
from imgest.scoring.batcher import Batching
from imgest.scoring.model import Model
from imgest.scoring.registry import ModelRegistry
from imgest.scoring.scorers import Scorers
from imgest.storage.base import StoreOptions
from imgest.storage.registry import open_store
from imgest.storage.timeout import TimeoutStore


@dataclass(frozen=True)
class Resources:
    """An opened store and catalog, with the model registry over both."""

    store: TimeoutStore
    catalog: Catalog
    registry: ModelRegistry


@dataclass(frozen=True)
class Scoring:
    """The registry-backed scorers and the pipelines sized for the active model."""

    scorers: Scorers
    pipeline: Pipeline  # settings.pipeline, what uploads go through
    pipelines: dict[str, Pipeline]


@dataclass(frozen=True)
class Runtime:
    """Builds every resource a process needs from one Settings object."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics, compare=False, repr=False)

    # -- options ---------------------------------------------------------------------------
    def store_options(self) -> StoreOptions:
        """The remote-store request settings and the local store's group commit and page
        cache advice (`storage_<name>` in settings)."""
        return from_settings(StoreOptions, self.settings, prefix="storage_")

    def catalog_options(self) -> CatalogOptions:
        """The catalog connection settings (`catalog_<name>` in settings)."""
        return from_settings(CatalogOptions, self.settings, prefix="catalog_")

    @property
    def intermediate(self) -> Intermediate | None:
        """How intermediates are made (settings.intermediate), or None when they are off."""
        s = self.settings
        if not s.intermediate:
            return None
        return Intermediate(long_side=s.intermediate, background=s.background)

    @property
    def limits(self) -> ImageLimits:
        """The decode limits (header dimensions, pixels, frames)."""
        return ImageLimits.from_settings(self.settings)

    # -- resources -------------------------------------------------------------------------
    def open_store(self) -> TimeoutStore:
        """The blob store the settings name, every call bounded by storage_timeout_s.

        Opening a local store sweeps stale temp files (blocking). A remote store binds to the
        event loop that first uses it: open one per loop, close it on that loop.
        """
        backend = open_store(self.settings.storage_url, options=self.store_options())
        return TimeoutStore(backend, self.settings.storage_timeout_s)

    def open_catalog(self, *, migrate_schema: bool = True) -> Catalog:
        """The catalog the settings name, with their timeouts and pool (blocking)."""
        return Catalog.open(
            self.settings.catalog_url,
            options=self.catalog_options(),
            migrate_schema=migrate_schema,
        )

    @contextmanager
    def catalog(self, *, migrate_schema: bool = False) -> Iterator[Catalog]:
        """The catalog, closed afterwards."""
        catalog = self.open_catalog(migrate_schema=migrate_schema)
        try:
            yield catalog
        finally:
            catalog.close()

    @asynccontextmanager
    async def open(self, *, migrate_schema: bool = False) -> AsyncIterator[Resources]:
        """The store and the catalog (opened off the event loop), both closed afterwards."""
        store = await anyio.to_thread.run_sync(self.open_store)
        try:
            catalog = await anyio.to_thread.run_sync(
                lambda: self.open_catalog(migrate_schema=migrate_schema)
            )
            try:
                yield Resources(store, catalog, self.registry(catalog, store))
            finally:
                catalog.close()
        finally:
            await store.close()

    # -- models and pipelines --------------------------------------------------------------
    def registry(self, catalog: Catalog, store: TimeoutStore) -> ModelRegistry:
        """The model registry over an opened catalog and store."""
        return ModelRegistry(catalog, store)

    def pipelines(
        self, *, size: tuple[int, int] = (224, 224), crop: float = 0.875
    ) -> dict[str, Pipeline]:
        """The built-in pipelines (sized for a model input) and the pipelines file's."""
        return load_pipelines(self.settings, size=size, crop=crop)

    async def scoring(self, registry: ModelRegistry, model: Model | None = None) -> Scoring:
        """Scorers over `registry` (the default model registered on a first start) and the
        pipelines sized for the active model; ConfigError if settings.pipeline does not fit."""
        s = self.settings
        active = await registry.ensure_default(s.model_dir)
        scorers = Scorers(
            registry,
            batching=Batching(
                top_k=s.top_k,
                max_size=s.batch_max_size,
                max_wait=s.batch_max_wait_ms / 1000.0,
                max_queue=s.batch_max_queue,
            ),
            threads=s.inference_threads,
            device=s.device,
            active_ttl=s.active_model_ttl_s,
            preloaded=model,
        )
        spec = active.spec.input
        pipelines = self.pipelines(size=spec.size, crop=spec.crop)
        pipeline = pipelines[s.pipeline]
        if pipeline.input_size != spec.size:
            raise ConfigError(
                f"IMGEST_PIPELINE (pipeline): {pipeline.name} makes {pipeline.input_size} model "
                f"inputs, the active model {active.ref} takes {spec.size}"
            )
        return Scoring(scorers, pipeline, pipelines)
