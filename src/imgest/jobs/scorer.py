"""Scoring batches of stored images through one pipeline and one model: what a rescore worker runs.

A `BatchScorer` is built once per worker process (or Ray actor) from a picklable
`ScorerSpec`: it opens the blob store and loads the model (one onnxruntime thread, since the
engines run one worker per core). For each batch it reads the originals, renders them, stores
renditions the catalog does not have yet (blobs only: the driver records the rows) and scores
every model input of the batch in one onnxruntime call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from imgest.catalog.records import Label, RenditionRecord
from imgest.errors import ImgestError
from imgest.imaging.limits import ImageLimits
from imgest.imaging.pipeline import Pipeline, Rendition
from imgest.ingest import render_original
from imgest.scoring.model import Model
from imgest.storage.base import BlobExistsError, BlobNotFoundError, BlobStore, StoreError
from imgest.storage.paths import rendition_path
from imgest.storage.registry import open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkItem:
    """One image to score: where its original is, and whether its rendition must be stored."""

    image_id: str
    original_path: str
    store_rendition: bool


@dataclass(frozen=True)
class Outcome:
    """What became of one WorkItem: the top-k (and a newly stored rendition), or an error."""

    image_id: str
    top: tuple[Label, ...] = ()
    rendition: RenditionRecord | None = None
    error: str | None = None

    def to_json(self) -> str:
        """A JSON text (how Ray actors hand outcomes back to the driver)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        """Inverse of to_json."""
        raw = json.loads(text)
        rendition = raw["rendition"]
        return cls(
            image_id=raw["image_id"],
            top=tuple(Label(**t) for t in raw["top"]),
            rendition=RenditionRecord(**rendition) if rendition is not None else None,
            error=raw["error"],
        )


@dataclass(frozen=True)
class ScorerSpec:
    """Everything a worker needs to build its BatchScorer; picklable."""

    store_url: str
    model_dir: Path
    model_version: str
    pipeline: Pipeline
    top_k: int = 5
    device: str = "cpu"
    limits: ImageLimits = field(default_factory=ImageLimits)


class BatchScorer:
    """Reads, renders and scores batches of stored images (blocking; one per worker)."""

    def __init__(self, spec: ScorerSpec, *, store: BlobStore, model: Model) -> None:
        if model.version != spec.model_version:
            raise ValueError(
                f"model in {spec.model_dir} is version {model.version[:12]}, "
                f"not {spec.model_version[:12]}: it changed while the job was running"
            )
        self.spec = spec
        self.store = store
        self.model = model
        self._loop = asyncio.Runner()
        self._owns_store = False

    @classmethod
    def from_spec(cls, spec: ScorerSpec) -> BatchScorer:
        """Open the store and load the model (one onnxruntime thread) that `spec` names."""
        store = open_store(spec.store_url)
        model = Model(spec.model_dir, threads=1, device=spec.device)
        scorer = cls(spec, store=store, model=model)
        scorer._owns_store = True
        return scorer

    def close(self) -> None:
        """Close the event loop (and the store, if this scorer opened it)."""
        if self._owns_store:
            self._loop.run(self.store.close())
        self._loop.close()

    def score(self, items: Sequence[WorkItem]) -> list[Outcome]:
        """Outcomes for `items`, in order; one image's failure never fails the others."""
        originals = self._loop.run(self._read_all([i.original_path for i in items]))
        inputs: list[npt.NDArray[np.float32]] = []
        owners: list[int] = []  # index into `items` of each model input
        outcomes: list[Outcome] = []
        for n, (item, data) in enumerate(zip(items, originals, strict=True)):
            try:
                if isinstance(data, BaseException):
                    raise data
                rendition = self._render(data)
                stored = self._store(item, rendition) if item.store_rendition else None
            except (ImgestError, StoreError) as exc:
                outcomes.append(Outcome(item.image_id, error=_reason(exc)))
                continue
            tensors = self._model_inputs(rendition)
            inputs.extend(tensors)
            owners.extend([n] * len(tensors))
            outcomes.append(Outcome(item.image_id, rendition=stored))
        if not inputs:
            return outcomes
        probabilities = self.model.predict(np.stack(inputs))
        return [self._finish(n, o, probabilities, owners) for n, o in enumerate(outcomes)]

    def _finish(
        self,
        n: int,
        outcome: Outcome,
        probabilities: npt.NDArray[np.float32],
        owners: list[int],
    ) -> Outcome:
        if outcome.error is not None:
            return outcome
        rows = probabilities[[i for i, owner in enumerate(owners) if owner == n]]
        top = self.model.top_k(rows.mean(axis=0), self.spec.top_k)
        return Outcome(outcome.image_id, top=top, rendition=outcome.rendition)

    def _model_inputs(self, rendition: Rendition) -> list[npt.NDArray[np.float32]]:
        return [self.model.preprocess(rendition.pixels())]

    def _render(self, data: bytes) -> Rendition:
        return render_original(data, self.spec.pipeline, self.spec.limits)[1]

    def _store(self, item: WorkItem, rendition: Rendition) -> RenditionRecord:
        pipeline = self.spec.pipeline
        path = rendition_path(pipeline.name, pipeline.version, item.image_id, rendition.extension)
        encoded = rendition.encode()
        self._loop.run(self._put(path, encoded))
        return RenditionRecord(
            pipeline=pipeline.name,
            pipeline_version=pipeline.version,
            path=path,
            width=rendition.width,
            height=rendition.height,
            content_type=rendition.content_type,
            bytes=len(encoded),
        )

    async def _read_all(self, paths: list[str]) -> list[bytes | BaseException]:
        return await asyncio.gather(*(self._read(p) for p in paths), return_exceptions=True)

    async def _read(self, path: str) -> bytes:
        reader = await self.store.get(path)
        return await reader.read()

    async def _put(self, path: str, data: bytes) -> None:
        # Content-addressed: what is there already is these bytes, from an unfinished run.
        with contextlib.suppress(BlobExistsError):
            await self.store.put(path, data, mode="create")


def _reason(exc: Exception) -> str:
    """A one-line reason for the job summary."""
    if isinstance(exc, BlobNotFoundError):
        return f"original missing from storage: {exc.path}"
    if isinstance(exc, ImgestError):
        return f"{exc.code}: {exc.detail}"
    return f"storage error: {exc}"
