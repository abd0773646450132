"""Where a model runs: onnxruntime's providers for a device, CUDA libraries from pip, and the
check that a session did not quietly fall back to the CPU."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os

# onnxruntime >= 1.25 ships telemetry that must be switched off before the import (see model.py)
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort

from imgest.errors import DeviceUnavailable

log = logging.getLogger(__name__)


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
