"""Export's output directory: the split, safe file names, the manifest, classes.txt,
split.json, and the imagefolder and WebDataset writers (atomic files, so reruns resume).

What goes in it and why is in `imgest.jobs.export`; this module only writes and reads it back.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from imgest.errors import JobError

Format = Literal["imagefolder", "webdataset"]
MANIFEST = "manifest.jsonl"
CLASSES = "classes.txt"
SPLIT_FILE = "split.json"
SPLIT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# Separators, control characters, and lone surrogates (which no filesystem name can hold).
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f\ud800-\udfff]")
# The most bytes in one path component on ext4, XFS, Btrfs, ZFS and APFS (NTFS counts 255
# UTF-16 units, which 255 UTF-8 bytes never exceed).
NAME_BYTES = 255


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
            if not sep or not SPLIT_NAME.fullmatch(name) or not 0 < share <= 1:
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


def check_split_file(out: Path, split: Split | None) -> None:
    """JobError when `out` holds an export split another way (a rerun must not mix two);
    else, for a split, split.json says how this export is split."""
    try:
        earlier = json.loads((out / SPLIT_FILE).read_text())
    except FileNotFoundError:
        earlier = None
    except ValueError:
        earlier = {}  # torn by a crash before its first rename: not ours to judge
    if earlier is None and split is not None and manifest_ids(out):
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
        atomic_write(out / SPLIT_FILE, (json.dumps(wanted, sort_keys=True) + "\n").encode())


def class_counts(out: Path) -> dict[str, Counter[str]]:
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


def manifest_ids(out: Path) -> set[str]:
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


def atomic_write(path: Path, data: bytes) -> None:
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


class Splits:
    """The writer of an export: one per split, or one for the whole export without a split;
    one manifest and one classes.txt (so `.cls` numbers mean the same in every split)."""

    def __init__(self, out: Path, format: Format, shard_size: int, split: Split | None) -> None:
        self.manifest = _Manifest(out)
        classes = read_classes(out)
        names = split.names if split is not None else ("",)
        self.writers: dict[str, _ImageFolder | _WebDataset] = {
            name: _ImageFolder(out, name, self.manifest)
            if format == "imagefolder"
            else _WebDataset(out, name, self.manifest, shard_size, classes)
            for name in names
        }

    def __enter__(self) -> Splits:
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
        atomic_write(self.out / relative, sample.jpeg)
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
        atomic_write(self.out / CLASSES, "".join(f"{c}\n" for c in self.classes).encode())
        os.replace(self._path(".partial"), self._path(""))
        self.manifest.add(self._pending)
        self.manifest.sync()
        self._tar, self._pending = None, []
        self.shard += 1

    def _path(self, suffix: str) -> Path:
        return self.dir / f"shard-{self.shard:06d}.tar{suffix}"


def read_classes(out: Path) -> dict[str, int]:
    try:
        names = (out / CLASSES).read_text().splitlines()
    except FileNotFoundError:
        return {}
    return {name: i for i, name in enumerate(names)}
