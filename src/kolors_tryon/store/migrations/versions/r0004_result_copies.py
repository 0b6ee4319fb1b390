"""tryon_result_copies: succeeded jobs whose result copies are still to be made.

A table of its own (not a column of tryon_jobs): the sweep finds overdue copies by an
index on `due_at`, and purge/forget delete the row with the job (ON DELETE CASCADE).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Bring the schema from 0003 to 0004."""
    op.create_table(
        "tryon_result_copies",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["tryon_jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_tryon_result_copies_due", "tryon_result_copies", ["due_at"])


def downgrade() -> None:
    """Take the schema back from 0004 to 0003."""
    op.drop_index("ix_tryon_result_copies_due", table_name="tryon_result_copies")
    op.drop_table("tryon_result_copies")
