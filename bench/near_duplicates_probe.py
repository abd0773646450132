"""Probe: cosine similarity of embeddings between sample photos and their near-duplicates.

What the provisional IMGEST_NEAR_DUPLICATE_THRESHOLD (0.85) was read off: scikit-image's
sample photos (read out of its wheel, as scripts/export_default_model.py does; not installed),
each against copies of itself (JPEG q40/q60/q95, resized to 75/50/25 %, cropped 5/10 %, WebP,
EXIF rotation, a small colour shift), and the photos against each other. Not a calibration
(few photos, no two distinct photos of one class); issue 17's calibration benchmark is.

    .venv/bin/python bench/near_duplicates_probe.py [--wheel scikit_image-0.26.0-...whl]
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from imgest.imaging.limits import ImageLimits  # noqa: E402
from imgest.imaging.pipelines import load_pipelines  # noqa: E402
from imgest.rendering import render  # noqa: E402
from imgest.scoring.model import Model  # noqa: E402

PHOTOS = [
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "coffee",
    "grass",
    "gravel",
    "hubble_deep_field",
    "motorcycle_left",
    "retina",
    "rocket",
    "moon",
    "coins",
    "page",
    "cell",
    "ihc",
    "horse",
    "text",
    "color",
    "logo",
]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imgest-export"


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def copies(img: Image.Image) -> dict[str, bytes]:
    """Near-duplicates of one photo, by kind."""
    w, h = img.size
    out = {f"jpeg q{q}": encode(img, quality=q) for q in (40, 60, 95)}
    for s in (0.75, 0.5, 0.25):
        small = img.resize((max(8, int(w * s)), max(8, int(h * s))), Image.Resampling.LANCZOS)
        out[f"resize {int(s * 100)}%"] = encode(small, quality=85)
    for c in (0.05, 0.1):
        out[f"crop {int(c * 100)}%"] = encode(img.crop((int(w * c), int(h * c), w, h)), quality=90)
    out["webp"] = encode(img, "WEBP", quality=80)
    shifted = np.clip(np.asarray(img).astype(np.int16) + np.array([12, -6, 8]), 0, 255)
    out["colour shift"] = encode(Image.fromarray(shifted.astype(np.uint8)), quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display: the pixels are stored turned
    out["exif rotation"] = encode(
        img.transpose(Image.Transpose.ROTATE_90), quality=90, exif=exif.tobytes()
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    found = sorted(CACHE.glob("scikit_image-*.whl"))
    parser.add_argument("--wheel", type=Path, default=found[0] if found else None)
    args = parser.parse_args()
    if args.wheel is None:
        sys.exit("no scikit-image wheel: pass --wheel (pip download scikit-image==0.26.0)")
    model = Model.bundled(threads=1)
    pipeline = load_pipelines(None)["default"]
    limits = ImageLimits()

    def embed(data: bytes) -> np.ndarray:
        rendered = render(data, pipeline, limits, encode=False)
        vector = model.score([rendered.inputs])[0].embedding
        assert vector is not None
        return vector

    photos: dict[str, Image.Image] = {}
    with zipfile.ZipFile(args.wheel) as wheel:
        for name in PHOTOS:
            member = next(m for m in wheel.namelist() if m.startswith(f"skimage/data/{name}."))
            photos[name] = Image.open(io.BytesIO(wheel.read(member))).convert("RGB")
    base = {name: embed(encode(img, "PNG")) for name, img in photos.items()}
    by_kind: dict[str, list[float]] = {}
    for name, img in photos.items():
        for kind, data in copies(img).items():
            by_kind.setdefault(kind, []).append(float(base[name] @ embed(data)))
    print("| near-duplicate | min | 10th percentile | median |")
    print("|---|---:|---:|---:|")
    for kind, values in by_kind.items():
        v = np.asarray(values)
        print(f"| {kind} | {v.min():.3f} | {np.percentile(v, 10):.3f} | {np.median(v):.3f} |")
    pairs = sorted(
        ((float(base[a] @ base[b]), a, b) for a, b in itertools.combinations(PHOTOS, 2)),
        reverse=True,
    )
    print("distinct photos, most similar pairs:")
    for score, a, b in pairs[:3]:
        print(f"  {score:.3f}  {a} / {b}")


if __name__ == "__main__":
    main()
