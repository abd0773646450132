"""What the catalog gained with issues 15, 17 and 18, in one step from 0004.

- blob_leases: the rows that order blob writes and deletes (no storage call in a transaction);
- embeddings: one L2-normalised float16 vector per (image, model version), and models saying
  whether their graph has an embedding output;
- an index of predictions by top-1 score (the gallery and `sort=most_confident` walk it);
- renditions.source: what a rendition was rendered from, the original or the intermediate.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "blob_leases",
        sa.Column("path", sa.String(512), primary_key=True),
        sa.Column("holder", sa.String(32), primary_key=True),
        sa.Column("purpose", sa.String(8), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_blob_leases_holder", "blob_leases", ["holder"])
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
    op.create_index("ix_predictions_top1_score_image_id", "predictions", ["top1_score", "image_id"])
    # Every rendition stored so far was rendered from its original.
    with op.batch_alter_table("renditions") as batch:
        batch.add_column(
            sa.Column("source", sa.String(16), nullable=False, server_default="original")
        )


def downgrade() -> None:
    with op.batch_alter_table("renditions") as batch:
        batch.drop_column("source")
    op.drop_index("ix_predictions_top1_score_image_id", table_name="predictions")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("embedding_dim")
    op.drop_index("ix_embeddings_model_version_id", table_name="embeddings")
    op.drop_index("ix_embeddings_image_id", table_name="embeddings")
    op.drop_table("embeddings")
    op.drop_index("ix_blob_leases_holder", table_name="blob_leases")
    op.drop_table("blob_leases")
