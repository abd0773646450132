"""Plain records the catalog stores and returns: images, renditions, predictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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
class RenditionRecord:
    """One stored rendition of an image, made by one pipeline version."""

    pipeline: str
    pipeline_version: str
    path: str
    width: int
    height: int
    content_type: str
    bytes: int


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
