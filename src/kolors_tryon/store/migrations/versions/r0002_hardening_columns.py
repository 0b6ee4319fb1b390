"""Hardening: intent and lookup-grace times, content hash, conflicts, lingering slots.

The new NOT NULL counters and flags get a server default so that rows written before
this revision read as "none yet" (0 / false), which is what the code assumed for them.
The claim index takes the order of the claim query (`priority DESC`).

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _job_columns() -> list[sa.Column[Any]]:
    """The columns tryon_jobs gains (new objects each call: a Column joins one table)."""
    return [
        sa.Column("intent_at", sa.Float()),
        sa.Column("unresolved_until", sa.Float()),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("conflicts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("resubmissions", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("note", sa.Text()),
        sa.Column("lingering", sa.Boolean(), nullable=False, server_default=sa.false()),
    ]


def upgrade() -> None:
    """Add the new columns and replace the queue index by the claim index."""
    # Plain ADD COLUMNs, never a batch: on SQLite a batch copies and drops tryon_jobs, and
    # the drop would cascade to every waiting job's payload.
    for column in _job_columns():
        op.add_column("tryon_jobs", column)
    op.drop_index("ix_tryon_jobs_queue", table_name="tryon_jobs")
    op.create_index("ix_tryon_jobs_claim", "tryon_jobs", ["state", sa.text("priority DESC"), "seq"])
    op.add_column("tryon_account", sa.Column("results_cleaned_at", sa.Float()))


def downgrade() -> None:
    """Drop the new columns (their values are lost) and restore the queue index."""
    op.drop_column("tryon_account", "results_cleaned_at")
    op.drop_index("ix_tryon_jobs_claim", table_name="tryon_jobs")
    op.create_index("ix_tryon_jobs_queue", "tryon_jobs", ["state", "priority", "seq"])
    # Plain DROP COLUMNs (SQLite >= 3.35), for the same reason as above.
    for column in reversed(_job_columns()):
        op.drop_column("tryon_jobs", column.name)
