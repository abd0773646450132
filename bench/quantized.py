"""Benchmark: the int8 model's fidelity gate (issue 18) and its CPU cost against the float model.

Builds the int8 model with scripts/quantize_default_model.py (static QDQ, calibrated on the
unlabelled photos of bench/photoset.py) into a temporary folder, then, on the labelled photos
it was not calibrated on (each whole and in EVAL_CROPS seeded crops), rendered as uploads are:

- top-1 agreement with the float model (the gate: >= 99%), mean top-5 overlap, top-1 accuracy
  of both on the whole labelled photos, cosine of the int8 embedding to the float one;
- CPU ms per inference, one thread, runs of 4 inputs as `Model.predict` gives them, float and
  int8 interleaved (the speed-up is their ratio; adoption wants >= 1.2x);
- CPU ms of the upload's CPU path with each model: render of a 12 MP JPEG (bench/normalize.py's
  photo), preprocessing, inference of its one input; one thread, interleaved.

Usage: python bench/quantized.py [--quick]  (quick: whole photos only, fewer timing rounds).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from bench.fidelity import print_table  # noqa: E402  (the same Markdown lines and targets)
from bench.normalize import interleaved, photo  # noqa: E402
from bench.photoset import photos  # noqa: E402
from imgest.imaging.limits import ImageLimits, check  # noqa: E402
from imgest.imaging.pipeline import builtin_pipelines  # noqa: E402
from imgest.imaging.sniff import probe  # noqa: E402
from imgest.scoring.model import BUNDLED_DIR, CPU_RUN_INPUTS, Model  # noqa: E402

NAME = "quantized"
TITLE = "Quantized: int8 EfficientNet-Lite0 vs the float model (fidelity gate, CPU)"
TARGET_AGREEMENT = 99.0  # % top-1 agreement with the float model (issue 18)
TARGET_SPEEDUP = 1.2  # adopt only if at least this much faster per inference
EVAL_CROPS = 9

Array = npt.NDArray[np.float32]


def quantizer() -> ModuleType:
    """scripts/quantize_default_model.py as a module (scripts/ is not a package)."""
    path = ROOT / "scripts" / "quantize_default_model.py"
    spec = importlib.util.spec_from_file_location("quantize_default_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def fidelity(
    float_model: Model, int8: Model, inputs: Array, labels: list[tuple[int, ...]]
) -> dict[str, float]:
    """Agreement, top-5 overlap, accuracy and embedding cosine of `int8` against `float_model`."""
    p_float, e_float = float_model.infer(inputs)
    p_int8, e_int8 = int8.infer(inputs)
    assert e_float is not None and e_int8 is not None  # both graphs have the embedding output
    top_float = np.argsort(-p_float, axis=1)[:, :5]
    top_int8 = np.argsort(-p_int8, axis=1)[:, :5]
    overlap = [
        len(set(a.tolist()) & set(b.tolist())) / 5 for a, b in zip(top_float, top_int8, strict=True)
    ]
    cos = (e_float * e_int8).sum(axis=1) / (
        np.linalg.norm(e_float, axis=1) * np.linalg.norm(e_int8, axis=1)
    )
    labelled = [i for i, lab in enumerate(labels) if lab]
    return {
        "pictures": len(inputs),
        "agree": 100 * float(np.mean(top_float[:, 0] == top_int8[:, 0])),
        "differ": int(np.sum(top_float[:, 0] != top_int8[:, 0])),
        "top5": 100 * float(np.mean(overlap)),
        "labelled": len(labelled),
        "float_right": sum(int(top_float[i, 0] in labels[i]) for i in labelled),
        "int8_right": sum(int(top_int8[i, 0] in labels[i]) for i in labelled),
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
    }


def upload_path(model: Model, data: bytes) -> Callable[[], object]:
    """The upload's CPU path for one model: probe, limits, render, preprocess, infer."""
    pipeline = builtin_pipelines()["default"]

    def once() -> object:
        info = probe(data)
        check(info, ImageLimits())
        (pixels,) = pipeline.render(data, info).model_inputs()
        return model.infer(model.preprocess(pixels)[np.newaxis])

    return once


def run(repeats: int = 15, quick: bool = False) -> dict[str, Any]:
    """bench/run.py's entry: build, gate and time the int8 model; Markdown lines and targets."""
    q = quantizer()
    crops = 0 if quick else EVAL_CROPS
    rounds = max(5, repeats // 3 if quick else repeats)
    with tempfile.TemporaryDirectory(prefix="imgest-bench-int8-") as tmp:
        float_model = Model(BUNDLED_DIR, threads=1)
        built = time.perf_counter()
        calibration = q.calibration_inputs(float_model)
        onnx = q.build(Path(tmp) / q.NAME, calibration=calibration)
        build_s = time.perf_counter() - built
        size = onnx.stat().st_size
        digest = hashlib.sha256(onnx.read_bytes()).hexdigest()
        int8 = Model(onnx.parent, threads=1)
        seen = fidelity(float_model, int8, calibration, [()] * len(calibration))
        _, gate_photos = q.split(photos(fetch=True))
        chosen = q.pictures(gate_photos, crops)
        inputs = q.model_inputs(chosen, float_model)
        f = fidelity(float_model, int8, inputs, [p.labels for p in chosen])
        batch = inputs[:CPU_RUN_INPUTS]
        # process CPU ms per unit, one warm-up call each: the machine is shared
        infer = interleaved(
            {"float": lambda: float_model.predict(batch), "int8": lambda: int8.predict(batch)},
            rounds * 4,
            1,
            clock=time.process_time,
            per_call=len(batch),
        )
        data = photo()
        upload = interleaved(
            {"float": upload_path(float_model, data), "int8": upload_path(int8, data)},
            rounds,
            1,
            clock=time.process_time,
        )
    speedup = infer["float"] / infer["int8"]
    float_size = (BUNDLED_DIR / "model.onnx").stat().st_size
    command = ".venv/bin/python bench/quantized.py" + (" --quick" if quick else "")
    lines = [
        "Int8: static QDQ, per-channel int8 weights, uint8 activations, MinMax ranges over "
        "bench/photoset.py's 27 unlabelled photos (each whole and in "
        f"{q.CALIBRATION_CROPS} crops); built by scripts/quantize_default_model.py in "
        f"{build_s:.0f} s (sha256 {digest[:12]}). Measured on the 30 labelled photos (each "
        f"whole and in {crops} seeded crops), rendered as uploads are. Command: `{command}`",
        "",
        "| | float | int8 |",
        "|---|---:|---:|",
        f"| ONNX size | {float_size / 1e6:.1f} MB | {size / 1e6:.1f} MB |",
        f"| top-1 agreement with float ({f['pictures']} pictures) | - | {f['agree']:.1f}% "
        f"({f['differ']} differ) |",
        f"| mean top-5 overlap with float | - | {f['top5']:.1f}% |",
        f"| context: top-1 agreement on the calibration pictures ({seen['pictures']}, unlabelled, "
        f"in-sample) | - | {seen['agree']:.1f}% ({seen['differ']} differ) |",
        f"| top-1 accuracy, labelled whole photos | {f['float_right']} of {f['labelled']} | "
        f"{f['int8_right']} of {f['labelled']} |",
        f"| embedding cosine to float, mean / min | - | {f['cos_mean']:.4f} / {f['cos_min']:.4f} |",
        f"| CPU ms per inference (1 thread, runs of {CPU_RUN_INPUTS}) | {infer['float']:.2f} | "
        f"{infer['int8']:.2f} ({speedup:.2f}x) |",
        f"| CPU ms per 12 MP upload (render + preprocess + inference, 1 thread) | "
        f"{upload['float']:.1f} | {upload['int8']:.1f} "
        f"({upload['float'] / upload['int8']:.2f}x) |",
        "",
    ]
    return {
        "name": NAME,
        "title": TITLE,
        "lines": lines,
        "targets": [
            {
                "what": "int8 model: top-1 agreement with the float model (gate)",
                "target": f">= {TARGET_AGREEMENT:g}%",
                "value": f"{f['agree']:.1f}% of {f['pictures']}",
                "met": f["agree"] >= TARGET_AGREEMENT,
                "note": "static QDQ post-training quantization; not shipped (docs/model.md)",
            },
            {
                "what": "int8 model: CPU speed-up per inference (1 thread)",
                "target": f">= {TARGET_SPEEDUP:g}x",
                "value": f"{speedup:.2f}x",
                "met": speedup >= TARGET_SPEEDUP,
            },
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="whole photos, fewer rounds")
    args = parser.parse_args(argv)
    print_table(run(quick=args.quick))


if __name__ == "__main__":
    main()
