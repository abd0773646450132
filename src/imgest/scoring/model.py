"""An ONNX image classifier with its input spec (size, layout, mean/std) and labels."""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
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

BUNDLED_DIR = Path(__file__).parent / "models" / "efficientnet-lite0"


@dataclass(frozen=True)
class InputSpec:
    """What the network wants: size (w, h), layout, and per-channel (x - mean) / std."""

    name: str
    size: tuple[int, int]
    layout: Literal["nchw", "nhwc"]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop: float


class Model:
    """A loaded ONNX classifier; `predict` blocks and is thread-safe (as onnxruntime is)."""

    def __init__(self, directory: Path, *, threads: int = 0, device: str = "cpu") -> None:
        spec_path = directory / "model.toml"
        with spec_path.open("rb") as fh:
            spec: dict[str, Any] = tomllib.load(fh)
        inp = spec["input"]
        self.name: str = spec["name"]
        self.directory = directory
        self.output_kind: str = spec.get("output", "logits")
        self.input = InputSpec(
            name=inp.get("name", "input"),
            size=(int(inp["size"][0]), int(inp["size"][1])),
            layout=inp.get("layout", "nchw"),
            mean=tuple(float(v) for v in inp["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in inp["std"]),  # type: ignore[arg-type]
            crop=float(inp.get("crop", 1.0)),
        )
        onnx_path = directory / spec.get("file", "model.onnx")
        model_bytes = onnx_path.read_bytes()
        self.version = hashlib.sha256(model_bytes).hexdigest()
        self.labels = (directory / spec.get("labels", "labels.txt")).read_text().splitlines()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model_bytes, options, providers=providers(device))
        check_device(self._session, device)
        self._output = self._session.get_outputs()[0].name
        self._mean = np.asarray(self.input.mean, dtype=np.float32)
        self._inv_std = 1.0 / np.asarray(self.input.std, dtype=np.float32)

    @classmethod
    def bundled(cls, *, threads: int = 0) -> Model:
        """The default model shipped in the package (EfficientNet-Lite0, ImageNet)."""
        return cls(BUNDLED_DIR, threads=threads)

    def preprocess(self, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """HxWx3 uint8 RGB (already at the input size) -> one normalized input tensor."""
        x = (pixels.astype(np.float32) - self._mean) * self._inv_std
        return np.ascontiguousarray(x.transpose(2, 0, 1)) if self.input.layout == "nchw" else x

    def predict(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Class probabilities for a stacked batch of preprocessed inputs."""
        raw = self._session.run([self._output], {self.input.name: batch})[0]
        out: npt.NDArray[np.float32] = np.asarray(raw, dtype=np.float32)
        if self.output_kind == "logits":
            out = out - out.max(axis=1, keepdims=True)
            np.exp(out, out=out)
            out /= out.sum(axis=1, keepdims=True)
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


def providers(device: str) -> list[str]:
    """The onnxruntime providers for `device`; DeviceUnavailable if this install lacks them."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "cuda":
        raise DeviceUnavailable(f"unknown device {device!r}: use cpu or cuda")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise DeviceUnavailable(
            "device cuda asked for, but this onnxruntime has no CUDA provider "
            f"(available: {', '.join(ort.get_available_providers())}); "
            "install onnxruntime-gpu instead of onnxruntime, or use --device cpu"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def check_device(session: ort.InferenceSession, device: str) -> None:
    """Refuse a session where onnxruntime quietly fell back to the CPU (no GPU, no driver)."""
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise DeviceUnavailable(
            "device cuda asked for, but onnxruntime could not start its CUDA provider "
            "(no usable GPU or CUDA libraries); use --device cpu"
        )
