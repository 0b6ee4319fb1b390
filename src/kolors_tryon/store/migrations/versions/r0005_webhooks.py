"""Webhooks to producers: the job's target, durable deliveries, attempts, gone URLs.

`tryon_jobs` gains the producer's `callback_url` and `webhook_events` (nullable: jobs
written before this revision have no webhook target, as they had none of ours), and an
index on `finished_at` for the sweep's search of ended jobs whose delivery was never
planned.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def _job_columns() -> list[sa.Column[Any]]:
    """The columns tryon_jobs gains (new objects each call: a Column joins one table)."""
    return [
        sa.Column("callback_url", sa.Text()),
        sa.Column("webhook_events", sa.String(128)),
    ]


def upgrade() -> None:
    """Bring the schema from 0003 to 0004."""
    # Plain ADD COLUMNs, never a batch (see 0002: a batch on SQLite drops tryon_jobs).
    for column in _job_columns():
        op.add_column("tryon_jobs", column)
    op.create_index("ix_tryon_jobs_finished", "tryon_jobs", ["finished_at"])
    op.create_table(
        "tryon_webhook_deliveries",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("url_hash", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.Column("attempting_until", sa.Float()),
        sa.Column("claim_token", sa.String(64)),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float()),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_tryon_webhook_deliveries_due", "tryon_webhook_deliveries", ["status", "next_at"]
    )
    op.create_index(
        "ix_tryon_webhook_deliveries_job", "tryon_webhook_deliveries", ["job_id", "state", "round"]
    )
    op.create_table(
        "tryon_webhook_attempts",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["tryon_webhook_deliveries.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(
        "ix_tryon_webhook_attempts_delivery", "tryon_webhook_attempts", ["delivery_id", "seq"]
    )
    op.create_table(
        "tryon_webhook_gone",
        sa.Column("url_hash", sa.String(64), nullable=False),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("url_hash"),
    )


def downgrade() -> None:
    """Take the schema back from 0004 to 0003 (deliveries and targets are lost)."""
    op.drop_table("tryon_webhook_gone")
    op.drop_index("ix_tryon_webhook_attempts_delivery", table_name="tryon_webhook_attempts")
    op.drop_table("tryon_webhook_attempts")
    op.drop_index("ix_tryon_webhook_deliveries_job", table_name="tryon_webhook_deliveries")
    op.drop_index("ix_tryon_webhook_deliveries_due", table_name="tryon_webhook_deliveries")
    op.drop_table("tryon_webhook_deliveries")
    op.drop_index("ix_tryon_jobs_finished", table_name="tryon_jobs")
    for column in reversed(_job_columns()):
        op.drop_column("tryon_jobs", column.name)
