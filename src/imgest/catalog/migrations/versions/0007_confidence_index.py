"""Predictions by top-1 score: the gallery and `GET /v1/images?sort=most_confident` walk it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_predictions_top1_score_image_id", "predictions", ["top1_score", "image_id"])


def downgrade() -> None:
    op.drop_index("ix_predictions_top1_score_image_id", table_name="predictions")
