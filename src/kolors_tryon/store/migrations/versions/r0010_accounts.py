"""A pool of Kling accounts: the account each job was created on, and each account's pause.

`tryon_jobs.account` names the account a job's claim went to and `account_pin` the one
a job asked for. Every job recorded before this revision ran on the single account of
that time, which the pool calls `default`: they are moved onto it here. The pause of a
pooled account lives in `tryon_pool_accounts` (the single account keeps `tryon_account`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Bring the schema from 0009 to 0010."""
    # Plain ADD COLUMNs, never a batch (see 0002: a batch on SQLite drops tryon_jobs).
    op.add_column("tryon_jobs", sa.Column("account", sa.String(32), nullable=True))
    op.add_column("tryon_jobs", sa.Column("account_pin", sa.String(32), nullable=True))
    op.execute("UPDATE tryon_jobs SET account = 'default'")
    op.create_table(
        "tryon_pool_accounts",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("paused_until", sa.Float(), nullable=True),
        sa.Column("pause_code", sa.String(64), nullable=True),
        sa.Column("pause_message", sa.Text(), nullable=True),
        sa.Column("busy_until", sa.Float(), nullable=True),
    )


def downgrade() -> None:
    """Take the schema back from 0010 to 0009."""
    op.drop_table("tryon_pool_accounts")
    op.drop_column("tryon_jobs", "account_pin")
    op.drop_column("tryon_jobs", "account")
