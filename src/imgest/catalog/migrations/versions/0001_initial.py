"""Initial catalog: images, tags, renditions, predictions."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("original_path", sa.String(512), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_images_created_at_id", "images", ["created_at", "id"])
    op.create_table(
        "image_tags",
        sa.Column(
            "image_id",
            sa.String(64),
            sa.ForeignKey("images.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(100), primary_key=True),
    )
    op.create_index("ix_image_tags_tag", "image_tags", ["tag"])
    op.create_table(
        "renditions",
        sa.Column(
            "image_id",
            sa.String(64),
            sa.ForeignKey("images.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("pipeline", sa.String(64), primary_key=True),
        sa.Column("pipeline_version", sa.String(64), primary_key=True),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "predictions",
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
        sa.Column("top", sa.JSON(), nullable=False),
        sa.Column("top1_label", sa.String(200), nullable=False),
        sa.Column("top1_score", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "image_id", "model_version", "pipeline_version", name="uq_predictions_key"
        ),
    )
    op.create_index("ix_predictions_image_id", "predictions", ["image_id"])
    op.create_index("ix_predictions_top1_label", "predictions", ["top1_label"])


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("renditions")
    op.drop_index("ix_image_tags_tag", table_name="image_tags")
    op.drop_table("image_tags")
    op.drop_index("ix_images_created_at_id", table_name="images")
    op.drop_table("images")
