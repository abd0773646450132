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
import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from imgest.catalog.records import PendingImage, PredictionRecord
from imgest.catalog.repo import Catalog, ImageFilter
from imgest.config import Settings
from imgest.duplicates import group_of, near_duplicate_groups
from imgest.errors import ImgestError, JobError
from imgest.imaging.limits import ImageLimits
from imgest.imaging.pipeline import Pipeline
from imgest.jobs.progress import progress_bar
from imgest.jobs.resolve import resolve_model, resolve_pipeline
from imgest.labels import MIN_SCORE, Vocabulary
from imgest.rendering import render, rendition_record_of
from imgest.runtime import Runtime
from imgest.scoring.registry import RegisteredModel
from imgest.storage.base import BlobStore, StoreError, timed_out
from imgest.storage.once import put_once, restore_missing
from imgest.storage.paths import rendition_path

Format = Literal["imagefolder", "webdataset"]
MANIFEST = "manifest.jsonl"
CLASSES = "classes.txt"
SPLIT_FILE = "split.json"
_SPLIT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
PAGE = 200
# Separators, control characters, and lone surrogates (which no filesystem name can hold).
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f\ud800-\udfff]")
# The most bytes in one path component on ext4, XFS, Btrfs, ZFS and APFS (NTFS counts 255
# UTF-16 units, which 255 UTF-8 bytes never exceed).
NAME_BYTES = 255


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
        return lines + [f"failed {i}: {reason}" for i, reason in self.failed]


@dataclass(frozen=True)
class Split:
    """Named shares of the corpus (train=0.8,val=0.1,test=0.1) and the seed that places each
    group in one of them."""

    names: tuple[str, ...]
    shares: tuple[float, ...]
    seed: int = 0

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> Split:
        """`NAME=SHARE,...` with shares above 0 that add up to 1; JobError otherwise."""
        names: list[str] = []
        shares: list[float] = []
        for part in text.split(","):
            name, sep, value = part.partition("=")
            name = name.strip()
            try:
                share = float(value)
            except ValueError:
                share = float("nan")
            if not sep or not _SPLIT_NAME.fullmatch(name) or not 0 < share <= 1:
                raise JobError(
                    f"bad split {part.strip()!r}: want NAME=SHARE, NAME in lower-case letters, "
                    "digits, - and _, SHARE above 0 (e.g. train=0.8,val=0.1,test=0.1)"
                )
            if name in names:
                raise JobError(f"split {name!r} named twice")
            names.append(name)
            shares.append(share)
        if abs(sum(shares) - 1.0) > 1e-6:
            raise JobError(f"the split's shares add up to {sum(shares):g}, not 1")
        return cls(tuple(names), tuple(shares), seed)

    def of(self, group: str) -> str:
        """The split of group `group`: where hash(seed, group) in [0, 1) falls."""
        digest = hashlib.sha256(f"{self.seed}\x00{group}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
        edge = 0.0
        for name, share in zip(self.names, self.shares, strict=True):
            edge += share
            if point < edge:
                return name
        return self.names[-1]  # the shares' sum rounded a hair below 1

    def __str__(self) -> str:
        return ",".join(f"{n}={s:g}" for n, s in zip(self.names, self.shares, strict=True))

    def describe(self) -> dict[str, Any]:
        """What split.json records of the split (a rerun must use the same)."""
        return {"split": str(self), "seed": self.seed}


@dataclass(frozen=True)
class Sample:
    """One image ready to write: its rendition's JPEG bytes and its manifest entry."""

    image_id: str
    label: str
    jpeg: bytes
    entry: dict[str, Any]


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
    _check_split_file(out, split)
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
        done = _manifest_ids(out)
        writer = _Splits(out, format, shard_size, split)
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
    summary.counts = _class_counts(out)
    if split is not None:
        counts = {n: dict(sorted(summary.counts.get(n, Counter()).items())) for n in split.names}
        text = json.dumps({**split.describe(), "counts": counts}, indent=2, sort_keys=True)
        _atomic_write(out / SPLIT_FILE, (text + "\n").encode())
    summary.elapsed = time.monotonic() - started
    return summary


def _check_split_file(out: Path, split: Split | None) -> None:
    """JobError when `out` holds an export split another way (a rerun must not mix two);
    else, for a split, split.json says how this export is split."""
    try:
        earlier = json.loads((out / SPLIT_FILE).read_text())
    except FileNotFoundError:
        earlier = None
    except ValueError:
        earlier = {}  # torn by a crash before its first rename: not ours to judge
    if earlier is None and split is not None and _manifest_ids(out):
        raise JobError(f"{out} holds an export without a split: export to another directory")
    if earlier is not None and split is None:
        raise JobError(f"{out} holds a split export: rerun with its --split and --seed")
    if split is None:
        return
    wanted = split.describe()
    if earlier and {k: earlier.get(k) for k in wanted} != wanted:
        raise JobError(
            f"{out} holds an export split {earlier.get('split')} with seed {earlier.get('seed')}: "
            "rerun with those, or export to another directory"
        )
    if earlier is None:
        _atomic_write(out / SPLIT_FILE, (json.dumps(wanted, sort_keys=True) + "\n").encode())


def _class_counts(out: Path) -> dict[str, Counter[str]]:
    """Images per split ("" without one) and label, as the manifest lists them."""
    counts: dict[str, Counter[str]] = {}
    try:
        text = (out / MANIFEST).read_text()
    except FileNotFoundError:
        return counts
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            counts.setdefault(str(entry.get("split", "")), Counter())[str(entry["label"])] += 1
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return counts


class _Source:
    """Streams Samples out of the catalog and the blob store."""

    def __init__(
        self,
        catalog: Catalog,
        store: BlobStore,
        loop: asyncio.Runner,
        pipeline: Pipeline,
        model: RegisteredModel,
        limits: ImageLimits,
        summary: ExportSummary,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.loop = loop
        self.pipeline = pipeline
        self.model = model
        self.limits = limits
        self.summary = summary
        self.vocabulary = Vocabulary(model.spec.labels)
        self.split: Split | None = None
        self.groups: Mapping[str, str] | None = None

    def samples(self, where: ImageFilter, done: set[str], advance: Any) -> Iterator[Sample]:
        p = self.pipeline
        after: str | None = None
        while page := self.catalog.image_page(
            p.name, p.version, where=where, after=after, limit=PAGE
        ):
            after = page[-1].id
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
        self.loop.run(put_once(self.store, path, rendered.encoded))
        blobs = {path: rendered.encoded}
        self.catalog.add_rendition(
            image.id,
            rendition_record_of(self.pipeline, path, rendered),
            lambda: self.loop.run(restore_missing(self.store, blobs)),
        )
        self.summary.rendered += 1
        return rendered.encoded


async def _read(store: BlobStore, path: str) -> bytes:
    return await (await store.get(path)).read()


def _manifest_ids(out: Path) -> set[str]:
    """Ids the manifest lists (a torn last line from a crash is ignored)."""
    try:
        text = (out / MANIFEST).read_text()
    except FileNotFoundError:
        return set()
    ids = set()
    for line in text.splitlines():
        try:
            ids.add(json.loads(line)["id"])
        except (ValueError, KeyError, TypeError):
            continue
    return ids


def safe_label(label: str) -> str:
    """A label as one directory name: no separators or control characters, no leading dot,
    at most NAME_BYTES of UTF-8. A longer one is cut at a code point boundary and ends in
    `~` and 12 hex digits of the label's SHA-256, so labels that share a long start stay
    apart."""
    name = _UNSAFE.sub("_", label).strip()
    name = "_" + name if not name or name.startswith(".") else name
    if len(name.encode()) <= NAME_BYTES:
        return name
    suffix = "~" + hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return fit_bytes(name, NAME_BYTES - len(suffix)).rstrip() + suffix


def fit_bytes(text: str, budget: int) -> str:
    """The longest start of `text` whose UTF-8 is at most `budget` bytes (whole code points)."""
    data = text.encode()
    # The input is valid UTF-8, so only the cut at the end can leave a partial code point.
    return data[:budget].decode(errors="ignore")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.partial")
    with temp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)


class _Manifest:
    """manifest.jsonl, appended to; synced to disk on `sync`."""

    def __init__(self, out: Path) -> None:
        self._fh: IO[str] = (out / MANIFEST).open("a")

    def add(self, entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            self._fh.write(json.dumps(entry, sort_keys=True) + "\n")
        self._fh.flush()

    def sync(self) -> None:
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self.sync()
        self._fh.close()


class _Splits:
    """The writer of an export: one per split, or one for the whole export without a split;
    one manifest and one classes.txt (so `.cls` numbers mean the same in every split)."""

    def __init__(self, out: Path, format: Format, shard_size: int, split: Split | None) -> None:
        self.manifest = _Manifest(out)
        classes = _read_classes(out)
        names = split.names if split is not None else ("",)
        self.writers: dict[str, _ImageFolder | _WebDataset] = {
            name: _ImageFolder(out, name, self.manifest)
            if format == "imagefolder"
            else _WebDataset(out, name, self.manifest, shard_size, classes)
            for name in names
        }

    def __enter__(self) -> _Splits:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for writer in self.writers.values():
                writer.close(failed=exc[0] is not None)
        finally:
            self.manifest.close()

    def write(self, sample: Sample) -> None:
        self.writers[sample.entry.get("split", "")].write(sample)


class _ImageFolder:
    """OUT/[<split>/]<label>/<id>.jpg, one file per image."""

    def __init__(self, out: Path, split: str, manifest: _Manifest) -> None:
        self.out = out
        self.prefix = f"{split}/" if split else ""
        self.manifest = manifest

    def close(self, failed: bool) -> None:
        pass  # each file is complete (and listed) as soon as it is written

    def write(self, sample: Sample) -> None:
        relative = f"{self.prefix}{safe_label(sample.label)}/{sample.image_id}.jpg"
        _atomic_write(self.out / relative, sample.jpeg)
        self.manifest.add([{**sample.entry, "path": relative}])


class _WebDataset:
    """Tar shards `[<split>/]shard-NNNNNN.tar` of `shard_size` samples: <id>.jpg, <id>.cls,
    <id>.json.

    `.cls` is the label's line number (from 0) in classes.txt, which grows as labels appear
    (shared by the splits). A shard is written as `.partial` and renamed when complete; only
    then do its samples go into the manifest.
    """

    def __init__(
        self,
        out: Path,
        split: str,
        manifest: _Manifest,
        shard_size: int,
        classes: dict[str, int],
    ) -> None:
        self.out = out
        self.dir = out / split if split else out
        self.prefix = f"{split}/" if split else ""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        for partial in self.dir.glob("shard-*.tar.partial"):
            partial.unlink()  # an interrupted shard: its samples are not in the manifest
        self.shard = len(list(self.dir.glob("shard-*.tar")))
        self.classes = classes
        self.manifest = manifest
        self._tar: tarfile.TarFile | None = None
        self._pending: list[dict[str, Any]] = []

    def close(self, failed: bool) -> None:
        if not failed:
            self._finish()
        elif self._tar is not None:
            self._tar.close()  # left as .partial: the next run removes it

    def write(self, sample: Sample) -> None:
        if self._tar is None:
            # Closed by _finish (or close after an error).
            self._tar = tarfile.open(  # noqa: SIM115
                self._path(".partial"), "w", format=tarfile.PAX_FORMAT
            )
        if sample.label not in self.classes:
            self.classes[sample.label] = len(self.classes)
        index = self.classes[sample.label]
        name = f"{self.prefix}shard-{self.shard:06d}.tar"
        entry = {**sample.entry, "cls": index, "shard": name}
        meta = json.dumps(entry, sort_keys=True).encode()
        for ext, data in (("jpg", sample.jpeg), ("cls", str(index).encode()), ("json", meta)):
            info = tarfile.TarInfo(f"{sample.image_id}.{ext}")
            info.size = len(data)
            info.mtime = 0
            self._tar.addfile(info, io.BytesIO(data))
        self._pending.append(entry)
        if len(self._pending) >= self.shard_size:
            self._finish()

    def _finish(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        with self._path(".partial").open("rb") as fh:
            os.fsync(fh.fileno())
        _atomic_write(self.out / CLASSES, "".join(f"{c}\n" for c in self.classes).encode())
        os.replace(self._path(".partial"), self._path(""))
        self.manifest.add(self._pending)
        self.manifest.sync()
        self._tar, self._pending = None, []
        self.shard += 1

    def _path(self, suffix: str) -> Path:
        return self.dir / f"shard-{self.shard:06d}.tar{suffix}"


def _read_classes(out: Path) -> dict[str, int]:
    try:
        names = (out / CLASSES).read_text().splitlines()
    except FileNotFoundError:
        return {}
    return {name: i for i, name in enumerate(names)}
