"""Every catalog test runs on SQLite and on PostgreSQL (the session's throwaway cluster)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imgest.catalog.records import ImageRecord, Label, PredictionRecord, RenditionRecord
from imgest.catalog.repo import Catalog
from imgest.storage.paths import original_path, rendition_path

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty catalog database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    cat = Catalog.open(catalog_url)
    yield cat
    cat.close()


@pytest.fixture
def make_record() -> Callable[..., ImageRecord]:
    def make(
        n: int, *, at: datetime = T0, tags: tuple[str, ...] = (), label: str = "tabby"
    ) -> ImageRecord:
        image_id = hashlib.sha256(str(n).encode()).hexdigest()
        return ImageRecord(
            id=image_id,
            format="jpeg",
            content_type="image/jpeg",
            width=640,
            height=480,
            frames=1,
            bytes=1000 + n,
            filename=f"{n}.jpg",
            original_path=original_path(image_id),
            created_at=at,
            fields={"description": f"image {n}", "device": ["a", "b"]},
            tags=tags,
            renditions=(
                RenditionRecord(
                    "default",
                    "v1",
                    rendition_path("default", "v1", image_id, "jpg"),
                    224,
                    224,
                    "image/jpeg",
                    5000,
                ),
            ),
            predictions=(
                PredictionRecord(
                    "m",
                    "mv",
                    "default",
                    "v1",
                    (Label(label, 281, 0.9), Label("other", 1, 0.05)),
                    at,
                ),
            ),
        )

    return make


@pytest.fixture
def stored(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> Callable[[int], list[ImageRecord]]:
    """stored(n): records 0..n-1 of make_record, added to the catalog."""

    def store(count: int) -> list[ImageRecord]:
        records = [make_record(n) for n in range(count)]
        for rec in records:
            assert catalog.add_image(rec)
        return records

    return store
