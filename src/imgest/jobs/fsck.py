"""fsck: check that every blob the catalog references is stored (and, deep, holds its bytes).

Reads the catalog in keyset pages of images and checks each page's blobs concurrently with
`head` (present, size as recorded); `deep` also streams every original through SHA-256 and
compares it with the image id. Memory stays at one page plus the problems found.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Literal

import anyio
import anyio.to_thread

from imgest.catalog.repo import BlobRef, Catalog
from imgest.storage.base import (
    BlobMeta,
    BlobNotFoundError,
    BlobStore,
    StoreError,
    StoreTimeoutError,
)

log = logging.getLogger(__name__)

ProblemKind = Literal["missing", "size_mismatch", "hash_mismatch", "unreadable"]


@dataclass(frozen=True)
class Problem:
    """One catalog reference whose blob is not what the row says."""

    kind: ProblemKind
    image_id: str
    path: str
    detail: str


@dataclass
class FsckReport:
    """What one fsck run checked and found."""

    deep: bool
    images: int = 0
    blobs: int = 0
    bytes_hashed: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        """The report as plain JSON-able values."""
        return {
            "ok": self.ok,
            "deep": self.deep,
            "images": self.images,
            "blobs": self.blobs,
            "bytes_hashed": self.bytes_hashed,
            "problems": [asdict(p) for p in self.problems],
        }


async def run(
    store: BlobStore,
    catalog: Catalog,
    *,
    deep: bool = False,
    concurrency: int = 8,
    on_problem: Callable[[Problem], None] | None = None,
) -> FsckReport:
    """Check every referenced blob; `deep` hashes originals too."""
    await anyio.to_thread.run_sync(catalog.ping)
    report = FsckReport(deep=deep)
    check = _Check(store, report, deep, on_problem or (lambda problem: None))
    limiter = anyio.CapacityLimiter(concurrency)
    pages: Iterator[list[BlobRef]] = catalog.blob_refs()
    while (page := await anyio.to_thread.run_sync(next, pages, None)) is not None:
        report.images += len({ref.image_id for ref in page})
        async with anyio.create_task_group() as group:
            for ref in page:
                group.start_soon(check.blob, ref, limiter)
        if check.unavailable is not None:
            # Not a problem of these blobs: the store is down, nothing more can be checked.
            raise check.unavailable
    log.info(
        "fsck: %d images, %d blobs, %d problems", report.images, report.blobs, len(report.problems)
    )
    return report


class _Check:
    def __init__(
        self,
        store: BlobStore,
        report: FsckReport,
        deep: bool,
        on_problem: Callable[[Problem], None],
    ) -> None:
        self.store = store
        self.report = report
        self.deep = deep
        self.on_problem = on_problem
        self.unavailable: StoreTimeoutError | None = None  # the store stopped answering

    async def blob(self, ref: BlobRef, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            self.report.blobs += 1
            if self.unavailable is not None:
                return
            meta: BlobMeta | None = None
            with self._reading(ref, "head"):
                meta = await self.store.head(ref.path)
            if meta is None:
                return
            if meta.size != ref.bytes:
                self._problem(
                    "size_mismatch", ref, f"catalog says {ref.bytes} bytes, blob has {meta.size}"
                )
            elif self.deep and ref.kind == "original":
                await self._hash(ref)

    async def _hash(self, ref: BlobRef) -> None:
        digest = hashlib.sha256()
        with self._reading(ref, "read"):
            reader = await self.store.get(ref.path)
            async for chunk in reader.stream(1 << 20):
                digest.update(chunk)
                self.report.bytes_hashed += len(chunk)
            if digest.hexdigest() != ref.image_id:
                self._problem("hash_mismatch", ref, f"sha256 is {digest.hexdigest()}")

    @contextmanager
    def _reading(self, ref: BlobRef, what: str) -> Iterator[None]:
        """A missing or unreadable blob is a problem of `ref`; a store that stopped answering
        ends the run (`unavailable`)."""
        try:
            yield
        except BlobNotFoundError:
            self._problem("missing", ref, "no blob at this path")
        except StoreTimeoutError as exc:
            self.unavailable = exc
        except StoreError as exc:
            self._problem("unreadable", ref, f"{what} failed: {exc}")

    def _problem(self, kind: ProblemKind, ref: BlobRef, detail: str) -> None:
        problem = Problem(kind, ref.image_id, ref.path, detail)
        self.report.problems.append(problem)
        log.warning("fsck: %s %s (%s): %s", kind, ref.path, ref.image_id, detail)
        self.on_problem(problem)
