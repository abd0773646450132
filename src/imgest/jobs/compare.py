"""Compare: two runs over the corpus (model@pipeline each), side by side, image by image.

A run is named `MODEL[:VERSION]@PIPELINE[:VERSION]` (versions are prefixes; without one, the
version with the latest predictions in the catalog). The comparison streams the images that
have both predictions in keyset pages and keeps only counts, histograms and the few
disagreements shown as thumbnails, so its memory does not grow with the corpus. Where
near-duplicate groups are computed (`imgest.duplicates`, from run B's model), it also counts
the disagreements on images in a group of two or more: where copies of one photo are
answered differently, or where a disagreement repeats across copies.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import io
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

from imgest.catalog.records import PredictionKey, PredictionPair
from imgest.catalog.repo import Catalog, ImageFilter
from imgest.config import Settings
from imgest.duplicates import group_of, near_duplicate_groups, sizes
from imgest.errors import JobError
from imgest.labels import label_matches
from imgest.runtime import Runtime
from imgest.storage.base import BlobStore, StoreError, StoreTimeoutError

BINS = 20  # confidence histogram bins over [0, 1]
PAGE = 1000
_RUN = re.compile(
    r"(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?P<mv>[0-9a-f]+))?"
    r"@(?P<pipeline>[a-z0-9][a-z0-9_-]*)(?::(?P<pv>[0-9a-z._-]+))?"
)


@dataclass(frozen=True)
class RunRef:
    """What the user typed: names, and version prefixes if given."""

    model: str
    pipeline: str
    model_version: str = ""
    pipeline_version: str = ""

    @classmethod
    def parse(cls, text: str) -> RunRef:
        """`MODEL[:VERSION]@PIPELINE[:VERSION]`; JobError if it is not that."""
        m = _RUN.fullmatch(text.strip())
        if m is None:
            raise JobError(f"{text!r} is not MODEL[:VERSION]@PIPELINE[:VERSION]")
        return cls(m["model"], m["pipeline"], m["mv"] or "", m["pv"] or "")


@dataclass(frozen=True)
class Disagreement:
    """One image where the two runs' top-1 differ, with a thumbnail to show."""

    pair: PredictionPair
    thumbnail: str = ""  # data: URL of a small JPEG, empty if the rendition is unavailable


@dataclass
class Comparison:
    """Everything the report shows; built by `compare`, rendered by `imgest.jobs.report`."""

    a: PredictionKey
    b: PredictionKey
    images: int = 0
    agree: int = 0
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)
    a_counts: Counter[str] = field(default_factory=Counter)
    b_counts: Counter[str] = field(default_factory=Counter)
    a_hist: list[int] = field(default_factory=lambda: [0] * BINS)
    b_hist: list[int] = field(default_factory=lambda: [0] * BINS)
    labelled: int = 0
    a_correct: int = 0
    b_correct: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    # Disagreements on images in a near-duplicate group of two or more, and in how many
    # groups; None when groups are not computed.
    grouped_disagreements: int | None = None
    disagreeing_groups: int | None = None

    @property
    def agreement(self) -> float:
        """Share of compared images whose top-1 labels are the same (0 when none)."""
        return self.agree / self.images if self.images else 0.0

    def accuracy(self, side: str) -> float | None:
        """Top-1 accuracy of run `side` ("a" or "b") on images with ground truth, or None."""
        if not self.labelled:
            return None
        return (self.a_correct if side == "a" else self.b_correct) / self.labelled

    def top_labels(self, n: int) -> list[str]:
        """The `n` labels most often top-1 under A or B."""
        return [label for label, _ in (self.a_counts + self.b_counts).most_common(n)]

    def matrix(self, labels: list[str]) -> list[list[int]]:
        """Counts of (A's top-1, B's top-1) over `labels`, the rest folded into "other"."""
        index = {label: i for i, label in enumerate(labels)}
        other = len(labels)
        grid = [[0] * (other + 1) for _ in range(other + 1)]
        for (a, b), n in self.pairs.items():
            grid[index.get(a, other)][index.get(b, other)] += n
        return grid

    def summary(self, top: int = 10) -> dict[str, Any]:
        """The JSON summary (no thumbnails)."""
        labels = self.top_labels(top)
        return {
            "a": _key(self.a),
            "b": _key(self.b),
            "images": self.images,
            "agree": self.agree,
            "agreement": round(self.agreement, 6),
            "labelled": self.labelled,
            "accuracy": {"a": self.accuracy("a"), "b": self.accuracy("b")},
            "matrix": {"labels": [*labels, "other"], "counts": self.matrix(labels)},
            "confidence_histograms": {"bins": BINS, "a": self.a_hist, "b": self.b_hist},
            "disagreements": [asdict(d.pair) for d in self.disagreements],
            "near_duplicates": {
                "disagreements": self.grouped_disagreements,
                "groups": self.disagreeing_groups,
            },
        }

    def add(self, pair: PredictionPair) -> None:
        """Count one image."""
        self.images += 1
        self.pairs[pair.a_label, pair.b_label] += 1
        self.a_counts[pair.a_label] += 1
        self.b_counts[pair.b_label] += 1
        self.a_hist[_bin(pair.a_score)] += 1
        self.b_hist[_bin(pair.b_score)] += 1
        if pair.a_label == pair.b_label:
            self.agree += 1
        if pair.truth is not None:
            self.labelled += 1
            self.a_correct += label_matches(pair.truth, pair.a_label)
            self.b_correct += label_matches(pair.truth, pair.b_label)


def compare(
    settings: Settings,
    a: str,
    b: str,
    *,
    where: ImageFilter | None = None,
    thumbnails: int = 48,
    groups: Mapping[str, str] | None = None,
) -> Comparison:
    """Compare runs `a` and `b` (MODEL[:VERSION]@PIPELINE[:VERSION]) over the catalog;
    `groups` (image id -> near-duplicate group id) default to those of B's model."""
    runtime = Runtime(settings)
    catalog = runtime.open_catalog()
    try:
        result = Comparison(resolve_run(catalog, a), resolve_run(catalog, b))
        if groups is None:
            groups = near_duplicate_groups(
                catalog, settings, result.b.model, result.b.model_version
            )
        grouped = sizes(groups)
        if groups:
            result.grouped_disagreements = result.disagreeing_groups = 0
        seen: set[str] = set()
        worst: list[tuple[float, str, PredictionPair]] = []  # min-heap on confidence
        for page in catalog.paired_predictions(result.a, result.b, where=where, limit=PAGE):
            for pair in page:
                result.add(pair)
                group = group_of(groups, pair.image_id)
                differ = pair.a_label != pair.b_label
                if differ and result.grouped_disagreements is not None and group in grouped:
                    result.grouped_disagreements += 1
                    seen.add(group)
                if pair.a_label != pair.b_label and thumbnails > 0:
                    item = (pair.a_score + pair.b_score, pair.image_id, pair)
                    (heapq.heappush if len(worst) < thumbnails else heapq.heappushpop)(worst, item)
        if result.disagreeing_groups is not None:
            result.disagreeing_groups = len(seen)
        chosen = [p for _, _, p in sorted(worst, reverse=True)]
        paths = catalog.rendition_paths(
            [p.image_id for p in chosen], result.b.pipeline, result.b.pipeline_version
        )
    finally:
        catalog.close()
    images = asyncio.run(_thumbnails(runtime, paths))
    result.disagreements = [Disagreement(p, images.get(p.image_id, "")) for p in chosen]
    return result


def resolve_run(catalog: Catalog, text: str) -> PredictionKey:
    """The catalog's run that `text` names (the newest of several that match)."""
    ref = RunRef.parse(text)
    runs = [
        r
        for r in catalog.prediction_runs(ref.model, ref.pipeline)
        if r.key.model_version.startswith(ref.model_version)
        and r.key.pipeline_version.startswith(ref.pipeline_version)
    ]
    if not runs:
        raise JobError(f"no predictions of {text} in the catalog; run `imgest rescore` first")
    return runs[0].key


def write_json(comparison: Comparison, top: int = 10) -> str:
    """The JSON summary as text."""
    return json.dumps(comparison.summary(top), indent=2) + "\n"


async def _thumbnails(runtime: Runtime, paths: dict[str, str]) -> dict[str, str]:
    if not paths:
        return {}
    store = runtime.open_store()
    try:
        found = await asyncio.gather(*(_thumbnail(store, p) for p in paths.values()))
    finally:
        await store.close()
    return {i: t for i, t in zip(paths, found, strict=True) if t}


async def _thumbnail(store: BlobStore, path: str, size: int = 112) -> str:
    try:
        data = await (await store.get(path)).read()
    except StoreTimeoutError:
        raise  # a store that does not answer is an outage (exit 3), not a missing thumbnail
    except StoreError:
        return ""  # the report says so; fsck finds the missing blob
    with Image.open(io.BytesIO(data)) as img:
        img.thumbnail((size, size))
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def _bin(score: float) -> int:
    return min(BINS - 1, max(0, int(score * BINS)))


def _key(key: PredictionKey) -> dict[str, str]:
    return {
        "model": key.model,
        "model_version": key.model_version,
        "pipeline": key.pipeline,
        "pipeline_version": key.pipeline_version,
    }
