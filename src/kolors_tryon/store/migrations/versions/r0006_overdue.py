"""tryon_jobs.overdue_at: when a job's Kling task outlived the tracking deadline.

A nullable column: jobs recorded before this revision were never reported overdue. Jobs
failed by the deadline before it (`lingering`) keep the old handling until their task
ends.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Bring the schema from 0005 to 0006."""
    # A plain ADD COLUMN, never a batch (see 0002: a batch on SQLite drops tryon_jobs).
    op.add_column("tryon_jobs", sa.Column("overdue_at", sa.Float(), nullable=True))


def downgrade() -> None:
    """Take the schema back from 0006 to 0005."""
    # SQLite >= 3.35 drops a column in place; older ones need no support here (0002).
    op.drop_column("tryon_jobs", "overdue_at")
