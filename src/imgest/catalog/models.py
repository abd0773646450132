"""Catalog tables (SQLAlchemy 2); portable between SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A `DateTime(timezone=True)` column that takes and gives aware UTC datetimes.

    SQLite keeps the wall time as text and hands back naive datetimes; PostgreSQL a real
    timestamptz in the session's zone. Converting here, on the way in and out, is the one place
    every stored time becomes UTC: a naive value means UTC, an aware one is moved to UTC (so
    SQLite compares the same instants PostgreSQL does). The DDL is `impl`'s: no migration.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _as_utc(value)


def _as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the catalog tables."""


class ImageRow(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    format: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(Integer, default=1)
    bytes: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(255), default="")
    original_path: Mapped[str] = mapped_column(String(512))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    label: Mapped[str | None] = mapped_column(String(200), nullable=True, default=None)

    __table_args__ = (
        Index("ix_images_created_at_id", "created_at", "id"),
        Index("ix_images_label", "label"),
    )


class TagRow(Base):
    __tablename__ = "image_tags"

    image_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)

    __table_args__ = (Index("ix_image_tags_tag", "tag"),)


class RenditionRow(Base):
    __tablename__ = "renditions"

    image_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    pipeline: Mapped[str] = mapped_column(String(64), primary_key=True)
    pipeline_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(512))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    # What it was rendered from: "original", or "intermediate" (the image's reduced copy).
    source: Mapped[str] = mapped_column(String(16), default="original", server_default="original")


class RunOutput:
    """The columns of a row that one model run through one pipeline (a PredictionKey) wrote
    about one image: predictions and embeddings alike."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("images.id", ondelete="CASCADE"), index=True
    )
    model: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(64))
    pipeline: Mapped[str] = mapped_column(String(64))  # the rendition the model was given
    pipeline_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PredictionRow(RunOutput, Base):
    __tablename__ = "predictions"

    top: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    top1_label: Mapped[str] = mapped_column(String(200))
    top1_score: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint(
            "image_id", "model_version", "pipeline_version", name="uq_predictions_key"
        ),
        Index("ix_predictions_top1_label", "top1_label"),
        # Sorting by confidence walks this index (migration 0005).
        Index("ix_predictions_top1_score_image_id", "top1_score", "image_id"),
    )


class EmbeddingRow(RunOutput, Base):
    """One image's embedding by one model version: L2-normalised float16 bytes of `dim` values.

    `id` grows with every insert, so a replica catches up with "ids above the last one seen".
    """

    __tablename__ = "embeddings"

    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        UniqueConstraint("image_id", "model_version", name="uq_embeddings_key"),
        Index("ix_embeddings_model_version_id", "model_version", "id"),
    )


class ModelRow(Base):
    """A registered model version: its spec and labels here, its ONNX bytes at `location`."""

    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the ONNX
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    output: Mapped[str] = mapped_column(String(16))
    labels: Mapped[list[str]] = mapped_column(JSON)
    location: Mapped[str] = mapped_column(String(512))  # blob path, or "bundled:<dir name>"
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    # Width of the graph's `embedding` output; None: it has none (or was registered before
    # the registry looked: the bundled model is looked at again on each start).
    embedding_dim: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_models_version", "version"),)


class BlobLeaseRow(Base):
    """A writer's or a deleter's lease on one blob path (see imgest.catalog.leases)."""

    __tablename__ = "blob_leases"

    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    holder: Mapped[str] = mapped_column(String(32), primary_key=True)  # one write or delete
    purpose: Mapped[str] = mapped_column(String(8))  # "write" or "delete"
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_blob_leases_holder", "holder"),)


class IdempotencyRow(Base):
    """One Idempotency-Key: the request's fingerprint and, once finished, its response."""

    __tablename__ = "idempotency_keys"

    principal: Mapped[str] = mapped_column(String(200), primary_key=True)  # "" without auth
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)
