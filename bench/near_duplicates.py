"""Calibration of the near-duplicate threshold on real photos and generated near-duplicates.

Usage: .venv/bin/python bench/near_duplicates.py [--quick] [--threshold T]
(bench/run.py runs it for `make bench`.)

Photos: the fidelity benchmark's set of real photos shipped in packages (bench/photoset.py:
ImageNet samples from foolbox, scikit-image's and OpenCV's sample photos, Debian wallpapers; it
says where each came from), else the photos of tests/data. For each photo, near-duplicates are
generated as an upload would bring them: JPEG re-encodes at quality 40-95, resizes to 25-100%,
crops of up to 10% a side, the pixels stored rotated with the EXIF orientation that turns them
back (3, 6, 8), format changes (PNG, WebP), small colour shifts (brightness, saturation, a
channel gain) and two combinations. Every image goes through imgest's own path: probe, decode
(EXIF orientation, colour management), the `default` pipeline, the bundled model's embedding
output, L2-normalised.

Positives: each photo with each of its near-duplicates. Negatives: every pair of two different
photos (originals and near-duplicates across photos), less the pairs of SAME_SCENE (two frames
of one sequence, near-duplicates in the source set itself); the pairs of distinct photos that
share an ImageNet class (the hard case the issue names) are counted apart. The sweep gives precision
(positives over everything at or above the threshold) and recall (positives found) per
threshold; the target is precision >= 0.99 and recall >= 0.95 at the setting's default
(`IMGEST_NEAR_DUPLICATE_THRESHOLD`).
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageEnhance

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from imgest.config import Settings  # noqa: E402
from imgest.imaging.limits import ImageLimits  # noqa: E402
from imgest.imaging.pipeline import builtin_pipelines  # noqa: E402
from imgest.rendering import render  # noqa: E402
from imgest.scoring.model import Model  # noqa: E402

TARGET_PRECISION = 0.99
TARGET_RECALL = 0.95
SWEEP = tuple(round(0.70 + 0.01 * i, 2) for i in range(30))
TEST_DATA = ("cat.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg")
# Pairs of the photo set that are near-duplicates of each other already: two frames of one
# OpenCV optical-flow sequence (cosine 0.89). Counted as neither positive nor negative.
SAME_SCENE = {frozenset({"opencv-doc__aero1.jpg", "opencv-doc__aero3.jpg"})}


@dataclass(frozen=True)
class Photo:
    """A source photo: name, bytes, ImageNet labels (maybe none) and where it came from."""

    name: str
    data: bytes
    labels: tuple[int, ...]
    source: str


def load_photos() -> list[Photo]:
    """The fidelity photo set (bench/photoset.py fills its cache once), else tests/data's."""
    try:
        import photoset  # type: ignore[import-not-found]  # bench/photoset.py (fidelity)

        found = [
            Photo(p.name, p.path.read_bytes(), tuple(p.labels), p.source)
            for p in photoset.photos(fetch=True)  # fills its cache with pip and apt-get
        ]
        if found:
            return found
    except (ImportError, SystemExit, OSError) as exc:
        print(f"photo set not available ({exc!r}); using tests/data", file=sys.stderr)
    data = ROOT / "tests" / "data"
    return [Photo(n, (data / n).read_bytes(), (), "tests/data") for n in TEST_DATA]


def _jpeg(im: Image.Image, quality: int, **kw: Any) -> bytes:
    out = io.BytesIO()
    im.convert("RGB").save(out, "JPEG", quality=quality, **kw)
    return out.getvalue()


def _encoded(im: Image.Image, fmt: str, **kw: Any) -> bytes:
    out = io.BytesIO()
    im.convert("RGB").save(out, fmt, **kw)
    return out.getvalue()


def _resize(im: Image.Image, scale: float) -> Image.Image:
    w, h = im.size
    return im.resize(
        (max(32, round(w * scale)), max(32, round(h * scale))), Image.Resampling.LANCZOS
    )


def _crop(im: Image.Image, rng: np.random.Generator, most: float = 0.10) -> Image.Image:
    w, h = im.size
    left, right = (int(w * f) for f in rng.uniform(0, most, 2))
    top, bottom = (int(h * f) for f in rng.uniform(0, most, 2))
    return im.crop((left, top, w - right, h - bottom))


def _exif_rotated(im: Image.Image, orientation: int) -> bytes:
    """The pixels stored turned, with the EXIF orientation that shows them upright again."""
    stored = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _jpeg(im.transpose(stored), 90, exif=exif.tobytes())


def _gain(im: Image.Image, gains: tuple[float, float, float]) -> Image.Image:
    arr = np.asarray(im.convert("RGB"), dtype=np.float32) * np.asarray(gains, dtype=np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


Variant = Callable[[Image.Image, np.random.Generator], bytes]

VARIANTS: dict[str, Variant] = {
    "jpeg q40": lambda im, r: _jpeg(im, 40),
    "jpeg q60": lambda im, r: _jpeg(im, 60),
    "jpeg q95": lambda im, r: _jpeg(im, 95),
    "resize 25%": lambda im, r: _jpeg(_resize(im, 0.25), 90),
    "resize 50%": lambda im, r: _jpeg(_resize(im, 0.5), 90),
    "resize 75%": lambda im, r: _jpeg(_resize(im, 0.75), 90),
    "crop <=10%": lambda im, r: _jpeg(_crop(im, r), 90),
    "crop <=10% (2)": lambda im, r: _jpeg(_crop(im, r), 90),
    "exif 6": lambda im, r: _exif_rotated(im, 6),
    "exif 3": lambda im, r: _exif_rotated(im, 3),
    "exif 8": lambda im, r: _exif_rotated(im, 8),
    "png": lambda im, r: _encoded(im, "PNG"),
    "webp q80": lambda im, r: _encoded(im, "WEBP", quality=80),
    "brightness +8%": lambda im, r: _jpeg(ImageEnhance.Brightness(im).enhance(1.08), 90),
    "saturation -10%": lambda im, r: _jpeg(ImageEnhance.Color(im).enhance(0.9), 90),
    "warmer (R+5%, B-5%)": lambda im, r: _jpeg(_gain(im, (1.05, 1.0, 0.95)), 90),
    "resize 50% + crop + q60": lambda im, r: _jpeg(_crop(_resize(im, 0.5), r), 60),
    "resize 25% + q40 + brighter": lambda im, r: _jpeg(
        ImageEnhance.Brightness(_resize(im, 0.25)).enhance(1.05), 40
    ),
}
QUICK = ("jpeg q40", "resize 25%", "crop <=10%", "exif 6", "webp q80", "warmer (R+5%, B-5%)")


class Embedder:
    """Bytes -> the bundled model's L2-normalised embedding, through imgest's own path."""

    def __init__(self) -> None:
        self.model = Model.bundled(threads=1)
        if self.model.embedding_dim is None:
            raise SystemExit("the bundled model has no embedding output")
        size, crop = self.model.input.size, self.model.input.crop
        self.pipeline = builtin_pipelines(size=size, crop=crop)["default"]
        self.limits = ImageLimits()

    def __call__(self, data: bytes) -> npt.NDArray[np.float32]:
        rendered = render(data, self.pipeline, self.limits, encode=False)
        batch = np.stack([self.model.preprocess(x) for x in rendered.inputs])
        _, vectors = self.model.infer(batch)
        assert vectors is not None
        v = vectors.mean(axis=0)
        return (v / np.linalg.norm(v)).astype(np.float32)


def run(
    repeats: int = 0,
    quick: bool = False,
    threshold: float | None = None,
    save: Path | None = None,
) -> dict[str, Any]:
    """The calibration; `repeats` is bench/run.py's and unused; `save`: an .npz of the vectors."""
    del repeats
    chosen = threshold if threshold is not None else Settings().near_duplicate_threshold
    started = time.perf_counter()
    photos = load_photos()
    embed = Embedder()
    names = [v for v in VARIANTS if not quick or v in QUICK]
    originals, variants = [], []  # variants: (photo index, variant name, vector)
    for n, photo in enumerate(photos):
        rng = np.random.default_rng(n)
        with Image.open(io.BytesIO(photo.data)) as opened:
            im = opened.convert("RGB")
        originals.append(embed(photo.data))
        for name in names:
            variants.append((n, name, embed(VARIANTS[name](im, rng))))
    orig = np.stack(originals)
    var = np.stack([v for _, _, v in variants])
    owner = np.asarray([n for n, _, _ in variants])
    if save is not None:
        np.savez(
            save,
            originals=orig,
            variants=var,
            owner=owner,
            kinds=np.asarray([v for _, v, _ in variants]),
            names=np.asarray([p.name for p in photos]),
        )
    positives = np.einsum("ij,ij->i", var, orig[owner])
    # negatives: original-original and original-variant pairs of two different photos
    group = np.arange(len(photos))
    for pair in SAME_SCENE:
        members = [n for n, p in enumerate(photos) if p.name in pair]
        group[members] = min(members, default=0)
    oo = orig @ orig.T
    upper = np.triu_indices(len(photos), 1)
    apart = group[upper[0]] != group[upper[1]]
    cross = group[owner][:, None] != group[None, :]
    neg = np.concatenate([oo[upper][apart], (var @ orig.T)[cross]])
    same_class = [
        float(oo[i, j])
        for i, j in itertools.combinations(range(len(photos)), 2)
        if set(photos[i].labels) & set(photos[j].labels)
    ]

    def at(t: float) -> tuple[float, float, int]:
        tp = int((positives >= t).sum())
        fp = int((neg >= t).sum())
        return (tp / (tp + fp) if tp + fp else 1.0), tp / len(positives), fp

    sweep = [(t, *at(t)) for t in SWEEP]
    good = [row for row in sweep if row[1] >= TARGET_PRECISION]
    best = max(good, key=lambda row: (row[2], -row[0])) if good else None
    close = sorted(
        (
            (float(oo[i, j]), photos[i].name, photos[j].name)
            for i, j in zip(*upper, strict=True)
            if group[i] != group[j]
        ),
        reverse=True,
    )[:5]
    precision, recall, fp = at(chosen)
    by_variant = {
        name: float(
            np.mean(positives[[k for k, (_, v, _) in enumerate(variants) if v == name]] >= chosen)
        )
        for name in names
    }
    took = time.perf_counter() - started
    lines = [
        f"{len(photos)} real photos ({', '.join(sorted({p.source for p in photos}))}), "
        f"{len(names)} near-duplicates of each: {len(positives)} positive pairs, "
        f"{len(neg)} negative pairs of different photos ({len(same_class)} of them two "
        f"photos of one ImageNet class); embeddings of the bundled model through the default "
        f"pipeline; {took:.0f} s.",
        "",
        f"At the default threshold {chosen:.2f}: precision {precision:.4f}, recall {recall:.4f} "
        f"({fp} false pairs); highest cosine of two different photos {neg.max():.3f}"
        + (f", of two photos of one class {max(same_class):.3f}" if same_class else "")
        + f"; lowest cosine of a near-duplicate {positives.min():.3f}.",
        "",
        "| threshold | precision | recall | false pairs |",
        "|---:|---:|---:|---:|",
        *(f"| {t:.2f} | {p:.4f} | {r:.4f} | {f} |" for t, p, r, f in sweep),
        "",
        (
            f"Best threshold for precision >= {TARGET_PRECISION}: {best[0]:.2f} "
            f"(precision {best[1]:.4f}, recall {best[2]:.4f})."
            if best
            else f"No threshold of the sweep reaches precision {TARGET_PRECISION}."
        ),
        "",
        "The closest pairs of two different photos: "
        + "; ".join(f"{a} / {b} {c:.3f}" for c, a, b in close)
        + ".",
        "",
        "Recall at the default threshold by kind of near-duplicate:",
        "",
        "| near-duplicate | recall | lowest cosine |",
        "|---|---:|---:|",
        *(
            f"| {name} | {by_variant[name]:.3f} | "
            f"{positives[[k for k, (_, v, _) in enumerate(variants) if v == name]].min():.3f} |"
            for name in names
        ),
        "",
    ]
    return {
        "title": "Near-duplicate threshold calibration",
        "targets": [
            {
                "what": f"near-duplicate precision at {chosen:.2f}",
                "target": f">= {TARGET_PRECISION}",
                "value": f"{precision:.4f}",
                "met": precision >= TARGET_PRECISION,
            },
            {
                "what": f"near-duplicate recall at {chosen:.2f}",
                "target": f">= {TARGET_RECALL}",
                "value": f"{recall:.4f}",
                "met": recall >= TARGET_RECALL,
            },
        ],
        "lines": lines,
        "sweep": sweep,
        "best": best,
    }


def print_table(result: dict[str, Any]) -> None:
    """Print the Markdown lines and the targets."""
    print("\n".join(result["lines"]))
    for t in result["targets"]:
        print(f"{t['what']}: {t['value']} (target {t['target']}, met: {t['met']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 kinds of near-duplicate, not 18")
    parser.add_argument("--threshold", type=float, default=None, help="instead of the setting's")
    parser.add_argument("--save", type=Path, default=None, help="write the vectors (.npz)")
    args = parser.parse_args()
    result = run(quick=args.quick, threshold=args.threshold, save=args.save)
    print_table(result)
    return 0 if all(t["met"] for t in result["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
