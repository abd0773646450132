"""Renditions say what they were rendered from: the original, or the image's intermediate.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every rendition stored so far was rendered from its original.
    with op.batch_alter_table("renditions") as batch:
        batch.add_column(
            sa.Column("source", sa.String(16), nullable=False, server_default="original")
        )


def downgrade() -> None:
    with op.batch_alter_table("renditions") as batch:
        batch.drop_column("source")
