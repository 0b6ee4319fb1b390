"""tryon_jobs.producer and producer_job_id: whose job it is, and its id to them; and
tryon_producer_days: the days a producer reached its budget; tryon_batches and
tryon_jobs.batch_id: named sets of a producer's jobs.

Every job recorded before this revision belongs to `default`, and its key is its job id
(as `job_key("default", id)` is): the data stays valid without rewriting any key.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Bring the schema from 0007 to 0008 (producers)."""
    # Plain ADD COLUMNs, never a batch (see 0002: a batch on SQLite drops tryon_jobs).
    op.add_column(
        "tryon_jobs",
        sa.Column("producer", sa.String(64), server_default="default", nullable=False),
    )
    op.add_column("tryon_jobs", sa.Column("producer_job_id", sa.String(64), nullable=True))
    op.execute("UPDATE tryon_jobs SET producer_job_id = job_id")
    op.create_index(
        "ix_tryon_jobs_producer_claim",
        "tryon_jobs",
        ["state", "producer", sa.text("priority DESC"), "seq"],
    )
    op.create_index("ix_tryon_jobs_producer", "tryon_jobs", ["producer", "seq"])
    op.create_table(
        "tryon_producer_days",
        sa.Column("producer", sa.String(64), primary_key=True),
        sa.Column("day", sa.Integer(), primary_key=True),
        sa.Column("budget", sa.Float(), nullable=False),
        sa.Column("spent", sa.Float(), nullable=False),
        sa.Column("reached_at", sa.Float(), nullable=False),
        sa.Column("announced", sa.Boolean(), nullable=False),
    )
    op.add_column("tryon_jobs", sa.Column("batch_id", sa.String(64), nullable=True))
    op.create_index("ix_tryon_jobs_batch", "tryon_jobs", ["producer", "batch_id", "state"])
    op.create_table(
        "tryon_batches",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("producer", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.UniqueConstraint("producer", "batch_id"),
    )
    op.create_index("ix_tryon_batches_listing", "tryon_batches", ["producer", "seq"])


def downgrade() -> None:
    """Take the schema back from 0008 to 0007 (other producers' jobs keep their keys)."""
    op.drop_table("tryon_batches")
    op.drop_index("ix_tryon_jobs_batch", "tryon_jobs")
    op.drop_column("tryon_jobs", "batch_id")
    op.drop_table("tryon_producer_days")
    op.drop_index("ix_tryon_jobs_producer", "tryon_jobs")
    op.drop_index("ix_tryon_jobs_producer_claim", "tryon_jobs")
    op.drop_column("tryon_jobs", "producer_job_id")
    op.drop_column("tryon_jobs", "producer")
