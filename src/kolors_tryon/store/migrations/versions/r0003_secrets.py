"""tryon_secrets: secrets the service generates once and every process shares.

The callback token secret (and later webhook signing) for deployments that set none.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Bring the schema from 0002 to 0003."""
    op.create_table(
        "tryon_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    """Take the schema back from 0003 to 0002."""
    op.drop_table("tryon_secrets")
