"""The job store as `create_all` made it up to commit 434ca07 (before migrations existed).

Revision ID: 0001
Revises:
Create Date: 2025-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# `seq` and `version` are 64-bit on PostgreSQL; SQLite's rowid alias must be INTEGER.
BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create tryon_jobs, tryon_payloads and tryon_account as 434ca07 had them."""
    op.create_table(
        "tryon_jobs",
        sa.Column("seq", BIG, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(64)),
        sa.Column("kling_task_id", sa.String(128)),
        sa.Column("images", sa.JSON()),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_message", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("create_pending", sa.Boolean(), nullable=False),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("final_unit_deduction", sa.String(32)),
        sa.Column("metadata", sa.JSON()),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", sa.Float()),
        sa.Column("attempt_until", sa.Float()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("submitted_at", sa.Float()),
        sa.Column("polled_at", sa.Float()),
        sa.Column("finished_at", sa.Float()),
    )
    op.create_index("ix_tryon_jobs_queue", "tryon_jobs", ["state", "priority", "seq"])
    op.create_table(
        "tryon_payloads",
        sa.Column(
            "job_id",
            sa.String(64),
            sa.ForeignKey("tryon_jobs.job_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_table(
        "tryon_account",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", BIG, nullable=False),
        sa.Column("paused_until", sa.Float()),
        sa.Column("pause_code", sa.String(64)),
        sa.Column("pause_message", sa.Text()),
        sa.Column("last_sweep_at", sa.Float()),
    )


def downgrade() -> None:
    """Drop the job store's tables (and everything in them)."""
    op.drop_table("tryon_account")
    op.drop_table("tryon_payloads")
    op.drop_index("ix_tryon_jobs_queue", table_name="tryon_jobs")
    op.drop_table("tryon_jobs")
