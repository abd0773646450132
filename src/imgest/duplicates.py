"""Near-duplicate groups (image id -> group id) for export --split, compare and the gallery.

The groups come from `imgest.similarity.groups` (connected components of embedding pairs at or
above `near_duplicate_threshold`, named by their smallest image id): one pass for a job, and for
the server an `IncrementalGroups` per model version that joins what was embedded since its last
update, so the cache below refreshes every few seconds at the cost of the new uploads.
Where the model has no embeddings there are none: every image is a group of its own (exact
duplicates already share one id), export splits image by image, the compare report says the
count was not computed, and the gallery hides its group controls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.to_thread

from imgest.config import Settings

# How long the server reuses the groups it computed (they change only as images come in; an
# update costs two catalog queries plus a search per image embedded since the last).
CACHE_SECONDS = 10.0

Groups = Mapping[str, str]


def near_duplicate_groups(
    catalog: Any, settings: Settings, model: str, model_version: str
) -> Groups | None:
    """{image id: group id} of `model`'s embeddings, or None when groups are not computed
    (no embedded image)."""
    from imgest.similarity.groups import near_duplicate_groups as find  # numpy, on first use

    groups = find(
        catalog,
        model,
        model_version,
        settings.near_duplicate_threshold,
        ann_min_vectors=settings.ann_min_vectors,
    )
    return groups or None


class LiveGroups:
    """The server's groups: one `IncrementalGroups` of the model version asked for, kept
    between calls (a new version starts afresh)."""

    def __init__(self, catalog: Any, settings: Settings) -> None:
        self.catalog = catalog
        self.settings = settings
        self._groups: Any = None  # IncrementalGroups, imported with numpy on first use

    def __call__(self, model_version: str) -> Groups | None:
        """{image id: group id} of `model_version`'s embeddings now, or None (none embedded)."""
        from imgest.similarity.groups import IncrementalGroups

        if self._groups is None or self._groups.model_version != model_version:
            self._groups = IncrementalGroups(
                self.catalog,
                model_version,
                self.settings.near_duplicate_threshold,
                ann_min_vectors=self.settings.ann_min_vectors,
            )
        return self._groups.update() or None


def group_of(groups: Groups | None, image_id: str) -> str:
    """The group of `image_id`: itself unless groups put it in another."""
    return groups.get(image_id, image_id) if groups else image_id


def members(groups: Groups | None, group: str) -> frozenset[str]:
    """The images of group `group` (an image not in any group is a group of its own)."""
    found = frozenset(i for i, g in (groups or {}).items() if g == group)
    return found or frozenset({group})


def together(ids: Sequence[str], groups: Groups | None) -> list[int]:
    """Positions of `ids` in the order that lays each group's images side by side: a group
    at the place of its first image, its others right after it, in their own order; an image
    of no group stays where it is among the rest (the gallery's page)."""
    runs: dict[str, list[int]] = {}
    for n, image_id in enumerate(ids):
        runs.setdefault(group_of(groups, image_id), []).append(n)
    return [n for run in runs.values() for n in run]  # dicts keep the first image's place


def sizes(groups: Groups | None) -> dict[str, int]:
    """Images per group id, for the groups with more than one image."""
    counts: dict[str, int] = {}
    for group in (groups or {}).values():
        counts[group] = counts.get(group, 0) + 1
    return {g: n for g, n in counts.items() if n > 1}


class GroupCache:
    """The server's near-duplicate groups of its active model, recomputed (in a worker
    thread, one computation at a time) at most every `ttl` seconds."""

    def __init__(
        self,
        compute: Callable[[], Groups | None],
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._ttl = ttl
        self._clock = clock
        self._lock = anyio.Lock()
        self._groups: Groups | None = None
        self._at: float | None = None

    async def current(self) -> Groups | None:
        """The groups (None: not computed), fresh within `ttl` seconds."""
        async with self._lock:
            now = self._clock()
            if self._at is None or now - self._at >= self._ttl:
                self._groups = await anyio.to_thread.run_sync(self._compute)
                self._at = self._clock()
            return self._groups
