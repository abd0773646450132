"""Plain records the catalog stores and returns: images, renditions, predictions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol


@dataclass(frozen=True)
class Label:
    """One class of a model's top-k answer."""

    label: str
    index: int
    score: float


@dataclass(frozen=True)
class PredictionRecord:
    """The top-k of one model (version) on one image through one pipeline (version)."""

    model: str
    model_version: str
    pipeline: str
    pipeline_version: str
    top: tuple[Label, ...]
    created_at: datetime


@dataclass(frozen=True)
class EmbeddingRecord:
    """One image's embedding by one model version (through the pipeline that fed it):
    `dim` L2-normalised values as float16 bytes (`imgest.similarity.vectors` converts)."""

    model: str
    model_version: str
    pipeline: str
    pipeline_version: str
    dim: int
    vector: bytes
    created_at: datetime


@dataclass(frozen=True)
class RenditionRecord:
    """One stored rendition of an image, made by one pipeline version."""

    pipeline: str
    pipeline_version: str
    path: str
    width: int
    height: int
    content_type: str
    bytes: int
    source: str = "original"  # what it was rendered from: "original" or "intermediate"


@dataclass(frozen=True)
class ImageRecord:
    """One uploaded original (id = SHA-256 of its bytes) with everything derived from it."""

    id: str
    format: str
    content_type: str
    width: int
    height: int
    frames: int
    bytes: int
    filename: str
    original_path: str
    created_at: datetime
    fields: dict[str, str | list[str]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    renditions: tuple[RenditionRecord, ...] = ()
    predictions: tuple[PredictionRecord, ...] = ()
    label: str | None = None  # ground truth, set by a person (PATCH, `imgest label`, upload)

    def rendition(self, pipeline: str, version: str | None = None) -> RenditionRecord | None:
        """The newest stored rendition of `pipeline` (at `version` when given), or None."""
        found = [
            r
            for r in self.renditions
            if r.pipeline == pipeline and (version is None or r.pipeline_version == version)
        ]
        return found[-1] if found else None

    def blob_paths(self) -> list[str]:
        """Every blob this record references."""
        return [self.original_path, *(r.path for r in self.renditions)]


@dataclass(frozen=True)
class PredictionKey:
    """What identifies one run over the corpus: a model version through a pipeline version."""

    model: str
    model_version: str
    pipeline: str
    pipeline_version: str


@dataclass(frozen=True)
class PendingImage:
    """An image a corpus job has to do: its original, its rendition if stored, its label."""

    id: str
    original_path: str
    rendition_path: str | None
    label: str | None = None  # ground truth
    width: int = 0  # the original's, as catalogued (before EXIF orientation)
    height: int = 0
    intermediate: RenditionRecord | None = None  # of the version asked for, if stored
    format: str = ""  # the original's ("jpeg", "png", ...), as catalogued

    @property
    def size(self) -> tuple[int, int]:
        """The original's (width, height) as catalogued."""
        return self.width, self.height


@dataclass(frozen=True)
class PredictionRun:
    """One run over the corpus as the catalog holds it: its key, size and latest write."""

    key: PredictionKey
    images: int
    latest: datetime


@dataclass(frozen=True)
class PredictionPair:
    """One image's top-1 under two runs A and B, with its ground truth if set."""

    image_id: str
    truth: str | None
    a_label: str
    a_score: float
    b_label: str
    b_score: float


LabelOutcome = Literal["set", "unchanged", "conflict"]


class Described(Protocol):
    """What a person attached to an image (an ImageRecord, or the API's view of one)."""

    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def label(self) -> str | None: ...
    @property
    def fields(self) -> Mapping[str, str | list[str]]: ...


@dataclass(frozen=True)
class Additions:
    """Metadata an upload brings for bytes that may be stored already: tags are merged in,
    the label and each text field are set only where the image has none (never overwritten:
    a different stored value is a conflict, left as it is)."""

    tags: Sequence[str] = ()
    label: str | None = None
    fields: Mapping[str, str | list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.tags or self.label is not None or self.fields)

    def applied_to(self, record: Described) -> Applied:
        """What these additions change on `record` (and what they leave, with a reason)."""
        have = set(record.tags)
        if self.label is None:
            label: LabelOutcome | None = None
        elif record.label is None:
            label = "set"
        else:
            label = "unchanged" if record.label == self.label else "conflict"
        fields_set = tuple(n for n in self.fields if n not in record.fields)
        conflicts = tuple(
            n for n, v in self.fields.items() if n in record.fields and record.fields[n] != v
        )
        return Applied(
            tags_added=tuple(t for t in dict.fromkeys(self.tags) if t not in have),
            label=label,
            fields_set=fields_set,
            fields_conflict=conflicts,
        )

    def created(self) -> Applied:
        """What a new image took of these additions: everything."""
        return Applied(
            tags_added=tuple(dict.fromkeys(self.tags)),
            label=None if self.label is None else "set",
            fields_set=tuple(self.fields),
        )


@dataclass(frozen=True)
class Applied:
    """What an upload's metadata did to the image, reported per file."""

    tags_added: tuple[str, ...] = ()
    label: LabelOutcome | None = None  # None: the upload carried no label
    fields_set: tuple[str, ...] = ()
    fields_conflict: tuple[str, ...] = ()  # stored with another value, left as they were

    @property
    def changes(self) -> bool:
        """Whether anything is written."""
        return bool(self.tags_added or self.label == "set" or self.fields_set)
