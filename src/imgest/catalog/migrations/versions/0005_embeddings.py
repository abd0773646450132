"""Embeddings: one L2-normalised float16 vector per (image, model version); models say whether
their graph has an embedding output.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embeddings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "image_id",
            sa.String(64),
            sa.ForeignKey("images.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("pipeline_version", sa.String(64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("image_id", "model_version", name="uq_embeddings_key"),
    )
    op.create_index("ix_embeddings_image_id", "embeddings", ["image_id"])
    op.create_index("ix_embeddings_model_version_id", "embeddings", ["model_version", "id"])
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("embedding_dim", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("embedding_dim")
    op.drop_index("ix_embeddings_model_version_id", table_name="embeddings")
    op.drop_index("ix_embeddings_image_id", table_name="embeddings")
    op.drop_table("embeddings")
