"""Blob leases: the rows that order blob writes and deletes (no storage call in a transaction).

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
        "blob_leases",
        sa.Column("path", sa.String(512), primary_key=True),
        sa.Column("holder", sa.String(32), primary_key=True),
        sa.Column("purpose", sa.String(8), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_blob_leases_holder", "blob_leases", ["holder"])


def downgrade() -> None:
    op.drop_index("ix_blob_leases_holder", table_name="blob_leases")
    op.drop_table("blob_leases")
