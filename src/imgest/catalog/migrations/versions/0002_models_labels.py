"""Model registry table; ground-truth label on images."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("label", sa.String(200), nullable=True))
    op.create_index("ix_images_label", "images", ["label"])
    op.create_table(
        "models",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("output", sa.String(16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("location", sa.String(512), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_models_version", "models", ["version"])


def downgrade() -> None:
    op.drop_index("ix_models_version", table_name="models")
    op.drop_table("models")
    op.drop_index("ix_images_label", table_name="images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("label")
