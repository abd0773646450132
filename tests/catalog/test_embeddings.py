"""Embeddings in the catalog: recorded with the image or with rescore results, read back in
order, deleted with the image; the migration adds and removes them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from imgest.catalog.db import alembic_config
from imgest.catalog.models import Base
from imgest.catalog.records import EmbeddingRecord, ImageRecord, PredictionKey
from imgest.catalog.repo import Catalog
from imgest.similarity.vectors import embedding_record, from_bytes

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def vector(seed: int, version: str = "mv") -> tuple[np.ndarray, EmbeddingRecord]:
    values = np.random.default_rng(seed).normal(size=1280).astype(np.float32)
    record = embedding_record(
        values,
        model="m",
        model_version=version,
        pipeline="default",
        pipeline_version="v1",
        created_at=NOW,
    )
    return values / np.linalg.norm(values), record


def test_recorded_with_the_image_read_back_and_deleted_with_it(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    a, b = make_record(1), make_record(2)
    va, ea = vector(1)
    _, eb = vector(2)
    assert catalog.add_image(a, embeddings=(ea,))
    assert catalog.add_image(b, embeddings=(eb,))
    assert not catalog.add_image(a, embeddings=(eb,))  # a duplicate writes nothing
    stored = catalog.embedding_of(a.id, "mv")
    assert stored is not None and stored.dim == 1280 and len(stored.vector) == 2560
    np.testing.assert_allclose(from_bytes(stored.vector, stored.dim), va, atol=1e-3)
    assert catalog.embedding_of(a.id, "other") is None
    since = catalog.embeddings_since("mv")
    assert [e.image_id for e in since] == [a.id, b.id]
    assert since[0].seq < since[1].seq
    assert [e.image_id for e in catalog.embeddings_since("mv", since[0].seq)] == [b.id]
    assert catalog.embeddings_since("mv", since[1].seq) == []
    assert [e.image_id for e in catalog.embeddings_since("mv", limit=1)] == [a.id]
    assert catalog.stored_ids([a.id, b.id, "f" * 64]) == {a.id, b.id}
    assert catalog.delete_image(a.id) is not None
    assert catalog.embedding_of(a.id, "mv") is None
    assert [e.image_id for e in catalog.embeddings_since("mv")] == [b.id]
    assert catalog.stored_ids([a.id]) == set()


def test_rescore_results_fill_missing_embeddings_idempotently(
    catalog: Catalog, make_record: Callable[..., ImageRecord]
) -> None:
    a, b = make_record(1), make_record(2)
    catalog.add_image(a)
    catalog.add_image(b)
    key = PredictionKey("m", "mv", "default", "v1")  # both have this prediction already
    assert catalog.count_pending(key) == 0
    assert catalog.count_pending(key, embedded=True) == 2
    page = next(catalog.image_pages("default", "v1", lacking=key, embedded=True))
    assert [p.id for p in page] == sorted([a.id, b.id])
    _, ea = vector(1)
    prediction = a.predictions[0]
    # The prediction is there already; the embedding is new: the image counts as done now.
    assert catalog.add_results([(a.id, prediction, None)], embeddings=[(a.id, ea)]) == 1
    assert catalog.add_results([(a.id, prediction, None)], embeddings=[(a.id, ea)]) == 0
    assert catalog.count_pending(key, embedded=True) == 1
    pages = catalog.image_pages("default", "v1", lacking=key, embedded=True)
    assert [[p.id for p in page] for page in pages] == [[b.id]]


def test_migration_matches_the_tables_and_downgrades(tmp_path: Path) -> None:
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}")
    with catalog.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diffs if "embedding" in repr(d)] == []
    cfg = alembic_config(catalog.engine)
    with catalog.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    inspector = inspect(catalog.engine)
    assert "embeddings" not in inspector.get_table_names()
    assert "embedding_dim" not in {c["name"] for c in inspector.get_columns("models")}
    with catalog.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert "embeddings" in inspect(catalog.engine).get_table_names()
    catalog.close()
