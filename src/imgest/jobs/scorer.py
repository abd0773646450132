"""Scoring batches of stored images through one pipeline and one model: what a rescore worker runs.

A `BatchScorer` is built once per worker process (or Ray actor) from a picklable
`ScorerSpec`: it opens the blob store (through `imgest.runtime`, from the job's settings) and
loads the model (one onnxruntime thread, since the engines run one worker per core). For each
batch it reads the originals (or the intermediates the driver chose instead), renders them
(encoding the JPEG only where the catalog lacks the rendition), stores those renditions (blobs
only: the driver records the rows) and scores every model input of the batch in one
`Model.predict` (which gives onnxruntime 4 inputs at a time on the CPU).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from PIL import Image

from imgest.catalog.records import Label, RenditionRecord
from imgest.config import Settings
from imgest.errors import ImgestError, StorageUnavailable
from imgest.imaging.gpu import gpu_decodable
from imgest.imaging.intermediate import Source
from imgest.imaging.limits import ImageLimits
from imgest.imaging.pipeline import Pipeline
from imgest.rendering import Rendered, render, render_decoded, rendition_record_of
from imgest.scoring.model import Model, ModelSpec
from imgest.similarity.vectors import to_bytes
from imgest.storage.base import (
    BlobNotFoundError,
    BlobStore,
    StoreError,
    timed_out,
)
from imgest.storage.once import put_all_once
from imgest.storage.paths import rendition_path

if TYPE_CHECKING:
    from imgest.imaging.gpu import GpuJpegDecoder

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class WorkItem:
    """One image to score: where its original is, whether its rendition must be stored, and
    the path of its intermediate when the pipeline renders from that instead."""

    image_id: str
    original_path: str
    store_rendition: bool
    intermediate_path: str = ""  # "": render from the original
    original_size: tuple[int, int] = (0, 0)  # as catalogued: what an intermediate stands for

    @property
    def source(self) -> Source:
        """What the image is rendered from."""
        return "intermediate" if self.intermediate_path else "original"

    @property
    def source_path(self) -> str:
        """The blob the image is rendered from."""
        return self.intermediate_path or self.original_path


@dataclass(frozen=True)
class Outcome:
    """What became of one WorkItem: the top-k, the embedding (float16 bytes, when the model
    has an embedding output) and a newly stored rendition, or an error."""

    image_id: str
    top: tuple[Label, ...] = ()
    rendition: RenditionRecord | None = None
    error: str | None = None
    unavailable: bool = False  # blob storage did not answer in time: the job stops
    embedding: bytes | None = field(default=None, repr=False)

    def to_json(self) -> str:
        """A JSON text (how Ray actors hand outcomes back to the driver)."""
        raw = asdict(self)
        if self.embedding is not None:
            raw["embedding"] = base64.b64encode(self.embedding).decode("ascii")
        return json.dumps(raw)

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
            unavailable=raw.get("unavailable", False),
            embedding=None if raw.get("embedding") is None else base64.b64decode(raw["embedding"]),
        )


@dataclass(frozen=True)
class ScorerSpec:
    """Everything a worker needs to build its BatchScorer; picklable (model weights included,
    so workers need no access to the catalog or the model registry). The job's settings go
    along whole, so a worker's store honours the same timeout and retries as the driver's."""

    settings: Settings = field(repr=False)
    model: ModelSpec
    model_bytes: bytes = field(repr=False)  # megabytes: a repr would print them all
    model_version: str
    pipeline: Pipeline
    top_k: int = 5
    device: str = "cpu"
    limits: ImageLimits = field(default_factory=ImageLimits)
    decode: str = "cpu"  # or "cuda": originals' JPEGs decoded on the GPU (imgest.imaging.gpu)

    def load_model(self) -> Model:
        """The model, with one onnxruntime thread (the engines run one worker per core)."""
        return Model.from_bytes(self.model_bytes, self.model, threads=1, device=self.device)


class BatchScorer:
    """Reads, renders and scores batches of stored images (blocking; one per worker)."""

    def __init__(
        self, spec: ScorerSpec, *, store: BlobStore, model: Model, owns_store: bool = False
    ) -> None:
        self.spec = spec
        self.store = store
        self.model = model
        self._loop = asyncio.new_event_loop()
        self._owns_store = owns_store  # close() closes it
        self.gpu: GpuJpegDecoder | None = None
        if spec.decode == "cuda":
            from imgest.imaging.gpu import GpuJpegDecoder  # loads nvImageCodec: only here

            self.gpu = GpuJpegDecoder()

    @classmethod
    def from_spec(cls, spec: ScorerSpec) -> BatchScorer:
        """Open the store the spec's settings name and load the model that `spec` names."""
        from imgest.runtime import Runtime

        store = Runtime(spec.settings).open_store()
        return cls(spec, store=store, model=spec.load_model(), owns_store=True)

    def close(self) -> None:
        """Close the event loop (and the store, if this scorer opened it)."""
        if self._owns_store:
            self._run(self.store.close())
        self._loop.close()

    def score(self, items: Sequence[WorkItem]) -> list[Outcome]:
        """Outcomes for `items`, in order; one image's failure never fails the others.

        The batch's blob reads and writes each go in one event-loop run (concurrently), and
        every model input of the batch (several per image for tiled pipelines) goes to the
        model in one predict.
        """
        originals = self._run(_gather([self._read(i.source_path) for i in items]))
        outcomes: list[Outcome | None] = [None] * len(items)
        rendered: dict[int, Rendered] = {}
        on_gpu = self._decode_on_gpu(items, originals)
        for n, (item, data) in enumerate(zip(items, originals, strict=True)):
            try:
                if isinstance(data, BaseException):
                    raise data
                pixels = on_gpu.get(n)
                if pixels is not None:
                    rendered[n] = render_decoded(
                        data, pixels, self.spec.pipeline, self.spec.limits,
                        encode=item.store_rendition,
                    )  # fmt: skip
                    continue
                rendered[n] = render(
                    data,
                    self.spec.pipeline,
                    self.spec.limits,
                    encode=item.store_rendition,
                    source=item.source,
                    original=item.original_size,
                )
            except (ImgestError, StoreError) as exc:
                outcomes[n] = _failed(item, exc)
        stored = self._store(items, rendered)
        for n, written in stored.items():
            if isinstance(written, ImgestError | StoreError):
                outcomes[n] = _failed(items[n], written)
                del rendered[n]
            elif isinstance(written, BaseException):
                raise written
        scores = self.model.score(
            [r.inputs for r in rendered.values()],
            how=self.spec.pipeline.aggregate,
            k=self.spec.top_k,
        )
        for n, scored in zip(rendered, scores, strict=True):
            record = stored.get(n)
            assert not isinstance(record, BaseException)
            vector = None if scored.embedding is None else to_bytes(scored.embedding)
            outcomes[n] = Outcome(
                items[n].image_id, top=scored.top, rendition=record, embedding=vector
            )
        return [o for o in outcomes if o is not None]

    def _decode_on_gpu(
        self, items: Sequence[WorkItem], blobs: Sequence[bytes | BaseException]
    ) -> dict[int, Image.Image | None]:
        """n -> the GPU's pixels of item n's original (None: it failed there, the CPU tries),
        for the originals the GPU can decode, all in one batch; {} without --decode cuda."""
        if self.gpu is None:
            return {}
        chosen = [
            n
            for n, (item, data) in enumerate(zip(items, blobs, strict=True))
            if isinstance(data, bytes) and item.source == "original" and gpu_decodable(data)
        ]
        pixels = self.gpu.decode([cast(bytes, blobs[n]) for n in chosen])
        return dict(zip(chosen, pixels, strict=True))

    def _store(
        self, items: Sequence[WorkItem], rendered: dict[int, Rendered]
    ) -> dict[int, RenditionRecord | BaseException]:
        """Store the renditions the catalog lacks: n -> its record, or why it failed."""
        pipeline = self.spec.pipeline
        records: dict[int, RenditionRecord] = {}
        writes = []
        for n, result in rendered.items():
            if not items[n].store_rendition:
                continue
            extension = result.rendition.extension
            path = rendition_path(pipeline.name, pipeline.version, items[n].image_id, extension)
            records[n] = rendition_record_of(pipeline, path, result, items[n].source)
            writes.append((path, result.encoded))
        # One call for the batch: a local store writes it with one flush (put_many).
        done = self._run(put_all_once(self.store, writes))
        return {
            n: error if isinstance(error, BaseException) else record
            for (n, record), error in zip(records.items(), done, strict=True)
        }

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        # A plain loop, not asyncio.Runner: Runner.run installs a SIGINT handler per call,
        # whose bookkeeping costs more than the blob I/O it wraps.
        return self._loop.run_until_complete(work)

    async def _read(self, path: str) -> bytes:
        reader = await self.store.get(path)
        return await reader.read()


async def _gather(work: list[Coroutine[Any, Any, T]]) -> list[T | BaseException]:
    return await asyncio.gather(*work, return_exceptions=True)


def _failed(item: WorkItem, exc: Exception) -> Outcome:
    return Outcome(item.image_id, error=_reason(exc), unavailable=timed_out(exc))


def _reason(exc: Exception) -> str:
    """A one-line reason for the job summary."""
    if isinstance(exc, BlobNotFoundError):
        return f"original missing from storage: {exc.path}"
    if isinstance(exc, StorageUnavailable):
        return f"storage error: {exc.__cause__ or exc.detail}"
    if isinstance(exc, ImgestError):
        return f"{exc.code}: {exc.detail}"
    return f"storage error: {exc}"
