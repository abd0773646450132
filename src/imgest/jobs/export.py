"""Export: renditions of one pipeline with labels, as a training set (imagefolder or WebDataset).

Each image's label is its ground truth if a person set one, else the top-1 of the chosen
model's prediction (the one through this pipeline if there is one) when its score reaches
`min_score` (below it the image is left out and counted); `manifest.jsonl` records which, per
image. Labels meet in one vocabulary, the model's classes: a ground truth that is one of a
class's synonyms ("tabby cat" for "tabby, tabby cat", any case) is that class, and every class
is named by its first synonym where that is unique ("tabby"); other ground truth stays a class
of its own. Images go one at a time from the catalog (keyset pages) to disk, so memory
does not grow with the corpus; renditions not stored yet are rendered from the original and
stored (as on-demand renditions are).

With a split (`--split train=0.8,val=0.1,test=0.1 --seed N`) each image goes to the split its
group hashes to: a hash of (seed, group id) is a number in [0, 1) that falls in one split's
share. A group is a set of near-duplicates (`imgest.duplicates`; without them every image is a
group of its own, and exact duplicates are one image already), so no photo and its re-encoded
or cropped copy land in different splits; and as a group's split depends only on the seed and
its id, images added later never move existing ones between splits (unless a new image joins
two groups into one). Files go under OUT/<split>/; one manifest and one classes.txt serve
every split, and split.json holds the split, the seed and per-split class counts.

Resumable: files are written atomically (temp file + rename), and an image is in the manifest
only once its file is complete (for WebDataset: once its whole shard is renamed into place), so
a rerun skips what the manifest lists and redoes at most one shard.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgest.catalog.records import PendingImage, PredictionRecord
from imgest.catalog.repo import Catalog, ImageFilter
from imgest.config import Settings
from imgest.duplicates import group_of, near_duplicate_groups
from imgest.errors import ImgestError, JobError
from imgest.imaging.limits import ImageLimits
from imgest.imaging.pipeline import Pipeline
from imgest.jobs.exportdir import (
    SPLIT_FILE,
    Format,
    Sample,
    Split,
    Splits,
    atomic_write,
    check_split_file,
    class_counts,
    manifest_ids,
)
from imgest.jobs.progress import progress_bar
from imgest.jobs.resolve import resolve_model, resolve_pipeline
from imgest.jobs.summary import failed_lines
from imgest.labels import MIN_SCORE, Vocabulary
from imgest.rendering import render, rendition_record_of
from imgest.runtime import Runtime
from imgest.scoring.registry import RegisteredModel
from imgest.storage.base import BlobStore, StoreError, timed_out
from imgest.storage.once import store_and_record
from imgest.storage.paths import rendition_path

PAGE = 200


@dataclass
class ExportSummary:
    """What one export run wrote."""

    out: Path
    format: str
    written: int = 0
    already: int = 0  # in the manifest from an earlier run
    unlabelled: int = 0  # no ground truth and no prediction of the model: left out
    low_score: int = 0  # no ground truth and a top-1 below min_score: left out
    mapped: int = 0  # ground truth that named one of the model's classes by a synonym
    min_score: float = MIN_SCORE
    rendered: int = 0  # renditions made (and stored) because none was stored yet
    sources: dict[str, int] = field(default_factory=lambda: {"ground_truth": 0, "prediction": 0})
    failed: list[tuple[str, str]] = field(default_factory=list)
    elapsed: float = 0.0
    split: Split | None = None
    groups: str = ""  # where the split's groups came from
    # Images in the export per split ("" without a split) and label, the earlier runs' too.
    counts: dict[str, Counter[str]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """A human summary."""
        return self._totals() + self._split_lines()

    def _split_lines(self) -> list[str]:
        if self.split is None:
            return []
        names = self.split.names
        lines = [f"split {self.split} (seed {self.split.seed}), groups: {self.groups}"]
        width = max([len("class"), *(len(c) for n in names for c in self.counts.get(n, {}))])
        lines.append("  ".join(["class".ljust(width), *(n.rjust(8) for n in names)]))
        counts = [self.counts.get(n, Counter()) for n in names]
        rows = [(c, [split[c] for split in counts]) for c in sorted(set().union(*counts))]
        rows.append(("images", [sum(split.values()) for split in counts]))
        for label, row in rows:
            lines.append("  ".join([label.ljust(width), *(str(v).rjust(8) for v in row)]))
        return lines

    def _totals(self) -> list[str]:
        lines = [
            f"exported {self.written} images to {self.out} ({self.format}); "
            f"{self.already} were already there, {self.unlabelled} have no label, "
            f"{self.low_score} left out with a top-1 below {self.min_score:g}",
            f"labels: {self.sources['ground_truth']} ground truth ({self.mapped} mapped to the "
            f"model's class names), {self.sources['prediction']} predicted; "
            f"{self.rendered} renditions made; {self.elapsed:.1f} s",
        ]
        return lines + failed_lines(self.failed)


def run(
    settings: Settings,
    *,
    pipeline: str,
    out: Path,
    format: Format = "imagefolder",
    model: str | None = None,
    where: ImageFilter | None = None,
    shard_size: int = 1000,
    min_score: float = MIN_SCORE,
    progress: bool = False,
    split: Split | None = None,
    groups: Mapping[str, str] | None = None,
) -> ExportSummary:
    """Write every image `where` selects to `out`, skipping what an earlier run wrote.

    With `split`, each image goes to its group's split; `groups` maps image ids to group ids
    (None: the near-duplicate groups of the model, where they are computed)."""
    if format not in ("imagefolder", "webdataset"):
        raise JobError(f"unknown export format {format!r}: imagefolder or webdataset")
    if not 0.0 <= min_score <= 1.0:
        raise JobError(f"min_score is a probability from 0 to 1, not {min_score}")
    if settings.storage_url.startswith("memory:"):
        raise JobError("export reads renditions from storage; a memory:// store has none")
    out.mkdir(parents=True, exist_ok=True)
    check_split_file(out, split)
    summary = ExportSummary(out=out, format=format, min_score=min_score, split=split)
    started = time.monotonic()
    runtime = Runtime(settings)
    catalog = runtime.open_catalog()
    loop = asyncio.Runner()
    store = runtime.open_store()
    try:
        entry = loop.run(resolve_model(runtime.registry(catalog, store), settings, model))
        chosen = resolve_pipeline(settings, pipeline, entry)
        if split is not None and groups is None:
            groups = near_duplicate_groups(catalog, settings, entry.name, entry.version)
            summary.groups = (
                f"near-duplicates of {entry.ref}" if groups else "none computed: one per image"
            )
        elif split is not None:
            summary.groups = f"{len(set(groups.values()))} given" if groups else "none given"
        source = _Source(catalog, store, loop, chosen, entry, runtime.limits, summary)
        source.split, source.groups = split, groups
        done = manifest_ids(out)
        writer = Splits(out, format, shard_size, split)
        total = catalog.count_images(where)
        with progress_bar("export", total, enabled=progress) as advance, writer:
            for sample in source.samples(where or ImageFilter(), done, advance):
                writer.write(sample)
                summary.written += 1
                summary.sources[sample.entry["label_source"]] += 1
    finally:
        loop.run(store.close())
        loop.close()
        catalog.close()
    summary.counts = class_counts(out)
    if split is not None:
        counts = {n: dict(sorted(summary.counts.get(n, Counter()).items())) for n in split.names}
        text = json.dumps({**split.describe(), "counts": counts}, indent=2, sort_keys=True)
        atomic_write(out / SPLIT_FILE, (text + "\n").encode())
    summary.elapsed = time.monotonic() - started
    return summary


@dataclass(eq=False)
class _Source:
    """Streams Samples out of the catalog and the blob store."""

    catalog: Catalog
    store: BlobStore
    loop: asyncio.Runner
    pipeline: Pipeline
    model: RegisteredModel
    limits: ImageLimits
    summary: ExportSummary
    vocabulary: Vocabulary = field(init=False)
    split: Split | None = field(default=None, init=False)
    groups: Mapping[str, str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.vocabulary = Vocabulary(self.model.spec.labels)

    def samples(self, where: ImageFilter, done: set[str], advance: Any) -> Iterator[Sample]:
        p = self.pipeline
        for page in self.catalog.image_pages(p.name, p.version, where=where, limit=PAGE):
            todo = [i for i in page if i.id not in done]
            self.summary.already += len(page) - len(todo)
            predicted = self.catalog.top1_predictions(
                [i.id for i in todo if i.label is None], self.model.version, p.version
            )
            for image in todo:
                sample = self._sample(image, predicted.get(image.id))
                if sample is not None:
                    yield sample
            advance(len(page))

    def _sample(self, image: PendingImage, prediction: PredictionRecord | None) -> Sample | None:
        entry: dict[str, Any] = {"id": image.id, "pipeline": self.pipeline.name}
        entry["pipeline_version"] = self.pipeline.version
        if self.split is not None:
            group = group_of(self.groups, image.id)
            entry["split"] = self.split.of(group)
            if group != image.id:
                entry["group"] = group
        words = self.vocabulary
        if image.label is not None:
            cls = words.class_of(image.label)
            label = image.label if cls is None else words.short(cls)
            entry.update(label=label, label_source="ground_truth", ground_truth=image.label)
            if cls is not None:
                entry["class"] = cls
                self.summary.mapped += 1
        elif prediction is not None and prediction.top:
            top = prediction.top[0]
            if top.score < self.summary.min_score:
                self.summary.low_score += 1
                return None
            label = words.short(top.label)
            entry.update(
                label=label,
                label_source="prediction",
                score=top.score,
                model=f"{prediction.model}@{prediction.model_version[:12]}",
                predicted_through=f"{prediction.pipeline}@{prediction.pipeline_version}",
            )
            entry["class"] = top.label
        else:
            self.summary.unlabelled += 1
            return None
        try:
            jpeg = self._rendition(image)
        except (ImgestError, StoreError) as exc:
            if timed_out(exc):  # a store that does not answer would make each image wait
                raise  # exit 3; a rerun resumes

            self.summary.failed.append((image.id, str(exc)))
            return None
        return Sample(image.id, label, jpeg, entry)

    def _rendition(self, image: PendingImage) -> bytes:
        if image.rendition_path is not None:
            return self.loop.run(_read(self.store, image.rendition_path))
        original = self.loop.run(_read(self.store, image.original_path))
        rendered = render(original, self.pipeline, self.limits)
        path = rendition_path(
            self.pipeline.name, self.pipeline.version, image.id, rendered.rendition.extension
        )
        rendition = rendition_record_of(self.pipeline, path, rendered)
        self.loop.run(
            store_and_record(
                self.store,
                self.catalog,
                {path: rendered.encoded},
                lambda lease: self.catalog.add_rendition(image.id, rendition, lease),
            )
        )
        self.summary.rendered += 1
        return rendered.encoded


async def _read(store: BlobStore, path: str) -> bytes:
    return await (await store.get(path)).read()
