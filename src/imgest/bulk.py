"""Bulk upload: find image files, derive tags and labels from folders, upload concurrently.

The library under `imgest upload` and `imgest import`: each file is hashed locally and
skipped when the server already has its bytes (HEAD by SHA-256), otherwise uploaded with its
own Idempotency-Key and the client's retries. A server that cannot be reached at all stops
the run (no file after it is tried) and `Summary.unreachable` says why. Nothing here prints;
the CLI renders progress and the summary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from imgest.api.schemas import PredictionOut
from imgest.client import (
    ApiError,
    AsyncClient,
    ImgestClientError,
    ServerUnreachable,
    UploadResult,
)

DEFAULT_EXTENSIONS = (
    "jpg",
    "jpeg",
    "png",
    "webp",
    "gif",
    "tif",
    "tiff",
    "bmp",
    "heic",
    "heif",
    "avif",
)


@dataclass(frozen=True)
class Job:
    """One file to send, with the metadata it gets."""

    path: Path
    tags: tuple[str, ...] = ()
    label: str | None = None


@dataclass(frozen=True)
class Top:
    """The best label of the first prediction an answer lists, and whose it is."""

    label: str
    score: float
    model: str
    pipeline: str

    @classmethod
    def first(cls, predictions: Sequence[PredictionOut]) -> Top | None:
        """Top-1 of the first prediction with any label, or None."""
        for p in predictions:
            if p.top:
                return cls(p.top[0].label, p.top[0].score, p.model, p.pipeline)
        return None


@dataclass(frozen=True)
class Outcome:
    """What happened to one job (kept small: a run may cover a million files)."""

    job: Job
    status: Literal["created", "existing", "rejected", "failed"]
    reason: str = ""  # why it was rejected or failed
    image_id: str | None = None
    sent: bool = True  # False when found by hash and never uploaded
    top: Top | None = None  # top-1 prediction (only when answers are kept)
    answer: dict[str, Any] | None = None  # the server's answer for the file (when kept)
    tags_added: int = 0  # tags the image did not have before
    label: Literal["set", "unchanged", "conflict"] | None = None  # what became of job.label

    @classmethod
    def of(cls, job: Job, result: UploadResult) -> Outcome:
        """The outcome of a server answer (or of a skip by hash)."""
        error = result.error
        reason = f"{error.code}: {error.detail}" if error is not None else ""
        applied = result.applied
        return cls(
            job,
            result.status,
            reason,
            result.id,
            result.sent,
            tags_added=len(applied.tags_added) if applied is not None else 0,
            label=applied.label if applied is not None else None,
        )


@dataclass
class Summary:
    """Every outcome, with the counts a person reads at the end."""

    outcomes: list[Outcome] = field(default_factory=list)
    unreachable: ServerUnreachable | None = None  # why the run stopped early, if it did

    def count(self, status: str) -> int:
        """How many files ended with `status`."""
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def skipped(self) -> int:
        """Existing files whose bytes were never sent (found by hash first)."""
        return sum(1 for o in self.outcomes if o.status == "existing" and not o.sent)

    @property
    def ok(self) -> bool:
        """Nothing was rejected, nothing failed, and the server could be reached."""
        return (
            self.unreachable is None and self.count("rejected") == 0 and self.count("failed") == 0
        )

    def existing(self, what: Callable[[Outcome], bool]) -> int:
        """How many existing files `what` holds for."""
        return sum(1 for o in self.outcomes if o.status == "existing" and what(o))

    def counts(self) -> dict[str, int]:
        """created / existing / rejected / failed / skipped, and what the existing files got
        of their metadata (new tags, labels set, label conflicts), for display or JSON."""
        names = ("created", "existing", "rejected", "failed")
        return {
            **{n: self.count(n) for n in names},
            "skipped": self.skipped,
            "existing_tagged": self.existing(lambda o: o.tags_added > 0),
            "existing_labelled": self.existing(lambda o: o.label == "set"),
            "label_conflicts": sum(1 for o in self.outcomes if o.label == "conflict"),
        }


def find_images(root: Path, extensions: Iterable[str] = DEFAULT_EXTENSIONS) -> list[Path]:
    """Image files under `root` (recursive, sorted), by extension; hidden entries skipped."""
    wanted = {e.lower().lstrip(".") for e in extensions}
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower().lstrip(".") in wanted:
            found.append(path)
    return sorted(found)


def folder_jobs(
    root: Path,
    paths: Sequence[Path],
    *,
    tags: Sequence[str] = (),
    tags_from_folders: bool = False,
    label_from_folder: bool = False,
) -> list[Job]:
    """Jobs for files under `root`: folder names (relative to root) as tags and/or label."""
    jobs = []
    for path in paths:
        folders = path.parent.relative_to(root).parts
        job_tags = list(tags)
        if tags_from_folders:
            job_tags += [f for f in folders if f not in job_tags]
        label = folders[-1] if label_from_folder and folders else None
        jobs.append(Job(path, tuple(job_tags), label))
    return jobs


async def run(
    client: AsyncClient,
    jobs: Sequence[Job],
    *,
    concurrency: int = 4,
    description: str | None = None,
    skip_existing: bool = True,
    keep_answers: bool = False,
    on_done: Callable[[Outcome], None] | None = None,
) -> Summary:
    """Send every job with at most `concurrency` in flight; outcomes in job order.

    `keep_answers` keeps each file's full answer and top-1 prediction in its outcome (a file
    skipped by hash costs one GET more); leave it off for large runs.
    """
    outcomes: list[Outcome | None] = [None] * len(jobs)
    todo = iter(enumerate(jobs))
    unreachable: list[ServerUnreachable] = []

    async def worker() -> None:
        for index, job in todo:  # workers share one iterator: each job is taken once
            if unreachable:
                return
            try:
                outcome = await _send(client, job, description, skip_existing, keep_answers)
            except ServerUnreachable as exc:
                unreachable.append(exc)
                return
            outcomes[index] = outcome
            if on_done is not None:
                on_done(outcome)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    done = [o for o in outcomes if o is not None]
    return Summary(done, unreachable[0] if unreachable else None)


async def _send(
    client: AsyncClient,
    job: Job,
    description: str | None,
    skip_existing: bool,
    keep_answers: bool,
) -> Outcome:
    try:
        result = await client.upload(
            job.path,
            description=description,
            tags=job.tags,
            label=job.label,
            skip_existing=skip_existing,
        )
        if keep_answers:
            return await _answered(client, job, result)
    except ServerUnreachable:
        raise
    except ApiError as exc:
        return Outcome(job, "failed", f"{exc.code}: {exc.detail}")
    except ImgestClientError as exc:
        return Outcome(job, "failed", str(exc))
    except OSError as exc:
        return Outcome(job, "failed", f"cannot read: {exc.strerror or exc}")
    return Outcome.of(job, result)


async def _answered(client: AsyncClient, job: Job, result: UploadResult) -> Outcome:
    """The outcome with the server's full answer and top-1 (fetched when skipped by hash)."""
    outcome = Outcome.of(job, result)
    if result.item is not None:
        item = result.item
        return replace(
            outcome, top=Top.first(item.predictions), answer=item.model_dump(mode="json")
        )
    image = await client.get(result.id)
    return replace(outcome, top=Top.first(image.predictions), answer=image.model_dump(mode="json"))
