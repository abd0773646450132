"""An ONNX image classifier with its input spec (size, layout, mean/std) and labels."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

# onnxruntime >= 1.25 ships 1DS telemetry on Linux that phones home and writes a session file
# to $TMPDIR at import; ORT_DISABLE_TELEMETRY must be set before the import to switch it off.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort

from imgest.catalog.records import Label
from imgest.errors import DeviceUnavailable
from imgest.imaging.steps import Aggregate

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).parent / "models" / "efficientnet-lite0"

Layout = Literal["nchw", "nhwc"]
OutputKind = Literal["logits", "probabilities"]
# On the CPU, onnxruntime is given at most this many inputs per run: in a bigger batch each
# layer's activations for the whole batch spill out of the caches before the next layer reads
# them (EfficientNet-Lite0, 1 thread: 5.0 ms per input in runs of 4, 6.0 in runs of 16;
# docs/benchmarks.md, tuning log). A GPU takes the whole batch in one run.
CPU_RUN_INPUTS = 4
LAYOUTS = ("nchw", "nhwc")
OUTPUT_KINDS = ("logits", "probabilities")
# A model may have a second output of this name, shape (N, D): one feature vector per input
# from the same run (the bundled model's pooled 1280-d head activation). Near-duplicate and
# similarity search use it, L2-normalised; a model without it scores as before.
EMBEDDING_OUTPUT = "embedding"


class ModelSpecError(ValueError):
    """The ONNX graph does not match the input spec or the labels it was registered with."""


@dataclass(frozen=True)
class InputSpec:
    """What the network wants: size (w, h), layout, and per-channel (x - mean) / std."""

    name: str
    size: tuple[int, int]
    layout: Layout
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (what the registry stores)."""
        return {
            "name": self.name,
            "size": list(self.size),
            "layout": self.layout,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop": self.crop,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> InputSpec:
        """Inverse of to_dict; also reads model.toml's [input] table (name, crop optional)."""
        layout = raw.get("layout", "nchw")
        if layout not in LAYOUTS:
            raise ModelSpecError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        size = tuple(int(v) for v in raw["size"])
        mean = tuple(float(v) for v in raw["mean"])
        std = tuple(float(v) for v in raw["std"])
        crop = float(raw.get("crop", 1.0))
        if len(size) != 2 or min(size) < 1:
            raise ModelSpecError(f"size must be two positive ints (width, height), got {size}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ModelSpecError("mean and std need three values each, std > 0")
        if not 0.0 < crop <= 1.0:
            raise ModelSpecError(f"crop must be in (0, 1], got {crop}")
        return cls(
            name=str(raw.get("name", "")),
            size=(size[0], size[1]),
            layout=layout,
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
            crop=crop,
        )


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a model but its weights: name, input spec, output kind, labels."""

    name: str
    input: InputSpec
    labels: tuple[str, ...]
    output: OutputKind = "logits"


def read_model_dir(directory: Path) -> tuple[ModelSpec, Path]:
    """The spec in `directory/model.toml` and the path of its ONNX file."""
    with (directory / "model.toml").open("rb") as fh:
        raw: dict[str, Any] = tomllib.load(fh)
    output = raw.get("output", "logits")
    if output not in OUTPUT_KINDS:
        raise ModelSpecError(f"output must be one of {OUTPUT_KINDS}, got {output!r}")
    labels = (directory / raw.get("labels", "labels.txt")).read_text().splitlines()
    spec = ModelSpec(
        name=raw["name"],
        input=InputSpec.from_dict({"name": "input", **raw["input"]}),
        labels=tuple(labels),
        output=output,
    )
    return spec, directory / raw.get("file", "model.onnx")


@dataclass(frozen=True)
class Scored:
    """One image's answer from one run: its top-k, and its L2-normalised embedding (float32)
    when the model has an embedding output."""

    top: tuple[Label, ...]
    embedding: npt.NDArray[np.float32] | None = None


def normalized(vectors: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
    """Rows (or one vector) scaled to unit L2 norm, as float32; a zero row stays zero."""
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=-1, keepdims=True)
    return np.asarray(out / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def pooled_embedding(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """One image's embedding from its inputs' rows (n_inputs, D): the normalised mean of the
    normalised rows (a tiled image is the centre of its tiles)."""
    return normalized(normalized(rows).mean(axis=0))


def aggregate(probabilities: npt.NDArray[np.float32], how: Aggregate) -> npt.NDArray[np.float32]:
    """One image's class scores from its inputs' rows (n_inputs, classes): per-class mean or max.

    `max` is not renormalized: each class keeps the highest probability any tile gave it.
    """
    if probabilities.ndim != 2 or probabilities.shape[0] == 0:
        raise ValueError(f"want (n_inputs >= 1, classes) probabilities, got {probabilities.shape}")
    if how == "mean":
        return np.asarray(probabilities.mean(axis=0), dtype=np.float32)
    if how == "max":
        return np.asarray(probabilities.max(axis=0), dtype=np.float32)
    raise ValueError(f"aggregate must be 'mean' or 'max', got {how!r}")


class Model:
    """A loaded ONNX classifier; `predict` blocks and is thread-safe (as onnxruntime is)."""

    name: str
    version: str
    spec: ModelSpec
    input: InputSpec
    labels: list[str]
    output_kind: OutputKind
    embedding_dim: int | None  # the embedding output's width, None without one

    def __init__(
        self, directory: Path, *, threads: int = 0, device: str = "cpu", spin: bool = False
    ) -> None:
        spec, onnx_path = read_model_dir(directory)
        self._load(onnx_path.read_bytes(), spec, threads=threads, device=device, spin=spin)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        spec: ModelSpec,
        *,
        threads: int = 0,
        device: str = "cpu",
        spin: bool = False,
    ) -> Model:
        """A model from ONNX bytes and its spec (what the registry hands out)."""
        model = cls.__new__(cls)
        model._load(data, spec, threads=threads, device=device, spin=spin)
        return model

    @classmethod
    def bundled(cls, *, threads: int = 0) -> Model:
        """The default model shipped in the package (EfficientNet-Lite0, ImageNet)."""
        return cls(BUNDLED_DIR, threads=threads)

    def _load(
        self, data: bytes, spec: ModelSpec, *, threads: int, device: str, spin: bool = False
    ) -> None:
        self.version = hashlib.sha256(data).hexdigest()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        if not spin:
            # Idle intra-op threads busy-wait for the next op by default, taking CPU from the
            # renders that run beside inference in the server: 49 vs 65 server CPU ms per
            # 12 MP upload without spinning (docs/benchmarks.md). A process doing nothing but
            # inference may pass spin=True.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        chosen = providers(device)  # DeviceUnavailable before onnxruntime is asked
        try:
            self._session = ort.InferenceSession(data, options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
            raise ModelSpecError(f"onnxruntime cannot load the file: {exc}") from None
        check_device(self._session, device)
        self._run_inputs = CPU_RUN_INPUTS if device == "cpu" else None
        if not spec.input.name:  # unnamed in the spec: the graph's only input
            inputs = self._session.get_inputs()
            spec = replace(spec, input=replace(spec.input, name=inputs[0].name))
        self.spec = spec
        self.name = spec.name
        self.input = spec.input
        self.labels = list(spec.labels)
        self.output_kind = spec.output
        outputs = self._session.get_outputs()
        self._output = next(o.name for o in outputs if o.name != EMBEDDING_OUTPUT)
        self.embedding_dim = embedding_dim(self._session)
        self._outputs = [self._output] + ([EMBEDDING_OUTPUT] if self.embedding_dim else [])
        self._mean = np.asarray(self.input.mean, dtype=np.float32)
        self._inv_std = 1.0 / np.asarray(self.input.std, dtype=np.float32)

    def check(self) -> None:
        """Raise ModelSpecError unless the graph takes the spec's input and gives one score
        per label: one float32 rank-4 input in the spec's layout and size, whose output for a
        batch of two is (2, len(labels))."""
        inputs = {i.name: i for i in self._session.get_inputs()}
        if self.input.name not in inputs:
            raise ModelSpecError(
                f"the graph has no input {self.input.name!r}; its inputs: {sorted(inputs)}"
            )
        if len(inputs) != 1:
            raise ModelSpecError(f"the graph must have exactly one input, has {sorted(inputs)}")
        meta = inputs[self.input.name]
        if meta.type != "tensor(float)":
            raise ModelSpecError(f"the input must be tensor(float), the graph has {meta.type}")
        width, height = self.input.size
        want = [3, height, width] if self.input.layout == "nchw" else [height, width, 3]
        shape = list(meta.shape)
        if len(shape) != 4:
            raise ModelSpecError(f"the input must have rank 4 (batch + image), has {shape}")
        for axis, (have, need) in enumerate(zip(shape[1:], want, strict=True), 1):
            if isinstance(have, int) and have != need:
                raise ModelSpecError(
                    f"input axis {axis} is {have} in the graph, but the spec "
                    f"({self.input.layout}, {width}x{height}) needs {need}; shape {shape}"
                )
        try:
            out = self.predict(np.zeros((2, *want), dtype=np.float32))
        except Exception as exc:
            raise ModelSpecError(f"the graph fails on a {want} input: {exc}") from None
        if out.shape != (2, len(self.labels)):
            raise ModelSpecError(
                f"the output for a batch of 2 is {list(out.shape)}, but there are "
                f"{len(self.labels)} labels: want [2, {len(self.labels)}]"
            )
        if self.embedding_dim is not None:
            _, vectors = self.infer(np.zeros((2, *want), dtype=np.float32))
            if vectors is None or vectors.shape != (2, self.embedding_dim):
                got = None if vectors is None else list(vectors.shape)
                raise ModelSpecError(
                    f"the {EMBEDDING_OUTPUT!r} output for a batch of 2 is {got}, "
                    f"want [2, {self.embedding_dim}]"
                )

    def preprocess(self, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """HxWx3 uint8 RGB (already at the input size) -> one normalized input tensor."""
        width, height = self.input.size
        if pixels.shape != (height, width, 3):
            raise ValueError(
                f"model {self.name} wants {width}x{height} RGB inputs, got an array of shape "
                f"{pixels.shape}; use a pipeline whose input size matches"
            )
        x = (pixels.astype(np.float32) - self._mean) * self._inv_std
        return np.ascontiguousarray(x.transpose(2, 0, 1)) if self.input.layout == "nchw" else x

    def predict(
        self, batch: npt.NDArray[np.float32], *, per_run: int | None = None
    ) -> npt.NDArray[np.float32]:
        """Class probabilities for a stacked batch of preprocessed inputs, given to
        onnxruntime `per_run` at a time (default: CPU_RUN_INPUTS on the CPU, all on a GPU)."""
        return self.infer(batch, per_run=per_run)[0]

    def infer(
        self, batch: npt.NDArray[np.float32], *, per_run: int | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """Class probabilities and, when the model has one, the raw embedding of every input,
        from the same runs (see predict)."""
        step = per_run or self._run_inputs or len(batch) or 1
        starts = range(0, len(batch), step) or range(1)  # an empty batch: one (empty) run
        runs = [self._run(batch[i : i + step]) for i in starts]
        out = np.concatenate([r[0] for r in runs])
        if self.output_kind == "logits":
            out = out - out.max(axis=1, keepdims=True)
            np.exp(out, out=out)
            out /= out.sum(axis=1, keepdims=True)
        if self.embedding_dim is None:
            return out, None
        return out, np.concatenate([r[1] for r in runs])

    def _run(self, inputs: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        raw = self._session.run(self._outputs, {self.input.name: inputs})
        return [np.asarray(r, dtype=np.float32) for r in raw]

    def classify(
        self,
        images: Sequence[Sequence[npt.NDArray[np.uint8]]],
        *,
        how: Aggregate = "mean",
        k: int = 5,
    ) -> list[tuple[Label, ...]]:
        """Top-k per image, where each image is its list of model inputs (one, or its tiles):
        preprocess every input, one batched predict, aggregate each image's rows."""
        return [scored.top for scored in self.score(images, how=how, k=k)]

    def score(
        self,
        images: Sequence[Sequence[npt.NDArray[np.uint8]]],
        *,
        how: Aggregate = "mean",
        k: int = 5,
    ) -> list[Scored]:
        """classify, with each image's embedding (None without an embedding output) from the
        same batched run."""
        counts = [len(inputs) for inputs in images]
        if not images:
            return []
        if min(counts) < 1:
            raise ValueError("every image needs at least one model input")
        batch = np.stack([self.preprocess(p) for inputs in images for p in inputs])
        probs, vectors = self.infer(batch)
        out: list[Scored] = []
        start = 0
        for n in counts:
            rows = slice(start, start + n)
            embedding = None if vectors is None else pooled_embedding(vectors[rows])
            out.append(Scored(self.top_k(aggregate(probs[rows], how), k), embedding))
            start += n
        return out

    def top_k(self, probabilities: npt.NDArray[np.float32], k: int) -> tuple[Label, ...]:
        """The k most probable classes of one row of probabilities."""
        k = min(k, probabilities.shape[0])
        idx = np.argpartition(-probabilities, k - 1)[:k]
        idx = idx[np.argsort(-probabilities[idx])]
        return tuple(
            Label(label=self._label(int(i)), index=int(i), score=round(float(probabilities[i]), 6))
            for i in idx
        )

    def _label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)


def embedding_dim(session: ort.InferenceSession) -> int | None:
    """The width D of the graph's `embedding` output (shape (batch, D)), or None if it has no
    such output. ModelSpecError for an output of that name with another shape."""
    found = next((o for o in session.get_outputs() if o.name == EMBEDDING_OUTPUT), None)
    if found is None:
        return None
    shape = list(found.shape)
    if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] < 1:
        raise ModelSpecError(
            f"the {EMBEDDING_OUTPUT!r} output must have shape (batch, D) with D fixed, has {shape}"
        )
    if len(session.get_outputs()) < 2:
        raise ModelSpecError(f"the graph has only an {EMBEDDING_OUTPUT!r} output, no scores")
    return int(shape[1])


def providers(device: str) -> list[str]:
    """The onnxruntime providers for `device`; DeviceUnavailable if this install lacks them."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "cuda":
        raise DeviceUnavailable(f"unknown device {device!r}: use cpu or cuda")
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise DeviceUnavailable(
            "device cuda asked for, but this onnxruntime has no CUDA provider "
            f"(available: {', '.join(available)}); "
            "install onnxruntime-gpu instead of onnxruntime, or use --device cpu"
        )
    preload_cuda_libraries()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


@functools.cache
def preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* pip packages beside onnxruntime-gpu
    (`pip install onnxruntime-gpu[cuda,cudnn]`), once per process.

    onnxruntime's CUDA provider finds those libraries only through the system's loader path,
    which pip's packages are not on; onnxruntime.preload_dlls is its own answer to that. Where
    CUDA is installed system-wide, or the libraries are missing, this changes nothing and
    check_device still refuses a session that fell back to the CPU."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:  # onnxruntime < 1.21
        return
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said):  # it prints what it could not load
            preload()
    except Exception as exc:  # its own errors (a missing directory): the session decides
        log.warning("onnxruntime.preload_dlls failed: %s", exc)
    if said.getvalue().strip():
        log.info("onnxruntime.preload_dlls: %s", " ".join(said.getvalue().split()))


def check_device(session: ort.InferenceSession, device: str) -> None:
    """Refuse a session where onnxruntime quietly fell back to the CPU (no GPU, no driver)."""
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise DeviceUnavailable(
            "device cuda asked for, but onnxruntime could not start its CUDA provider "
            "(no usable GPU or CUDA libraries); use --device cpu"
        )
