"""The review console: a review verdict on jobs, keyset-paging indexes, input thumbnails.

`tryon_jobs` gains `review_state`, `reviewed_by` and `reviewed_at` (nullable: nothing was
reviewed before), and two indexes so that the console pages 1,000,000 jobs newest first,
all or one state's, as index range scans. `tryon_thumbnails` keeps 256 px copies of the
input photos (the full inputs never are).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from kolors_tryon.store.metadata_field import CREATE_FUNCTION, DROP_FUNCTION, SQL_FUNCTION

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def _job_columns() -> list[sa.Column[Any]]:
    """The columns tryon_jobs gains (new objects each call: a Column joins one table)."""
    return [
        sa.Column("review_state", sa.String(16)),
        sa.Column("reviewed_by", sa.String(64)),
        sa.Column("reviewed_at", sa.Float()),
    ]


def upgrade() -> None:
    """Bring the schema from 0006 to 0007."""
    # Plain ADD COLUMNs, never a batch (see 0002: a batch on SQLite drops tryon_jobs).
    for column in _job_columns():
        op.add_column("tryon_jobs", column)
    op.create_index("ix_tryon_jobs_created", "tryon_jobs", ["created_at", "seq"])
    op.create_index("ix_tryon_jobs_state_created", "tryon_jobs", ["state", "created_at", "seq"])
    lingering = sa.text("lingering IS true")
    op.create_index(
        "ix_tryon_jobs_lingering",
        "tryon_jobs",
        ["state"],
        postgresql_where=lingering,
        sqlite_where=lingering,
    )
    if op.get_bind().dialect.name == "postgresql":
        # The console's metadata filter on `sku`, the field catalogue teams search by:
        # without it a rare SKU walks all the jobs (1.7 s at a million, bench/console.py).
        # Other fields are filtered without an index. An expression index, which Alembic's
        # comparison of the schema with tables.py skips, over a function that tolerates the
        # old records PostgreSQL cannot parse (store/metadata_field.py says why).
        op.execute(CREATE_FUNCTION)
        op.execute(
            "CREATE INDEX IF NOT EXISTS ix_tryon_jobs_metadata_sku "
            f"ON tryon_jobs ({SQL_FUNCTION}(metadata, 'sku'))"
        )
    op.create_table(
        "tryon_thumbnails",
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["tryon_jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "kind"),
    )


def downgrade() -> None:
    """Take the schema back from 0007 to 0006."""
    op.drop_table("tryon_thumbnails")
    op.execute("DROP INDEX IF EXISTS ix_tryon_jobs_metadata_sku")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_FUNCTION)
    op.drop_index("ix_tryon_jobs_lingering", table_name="tryon_jobs")
    op.drop_index("ix_tryon_jobs_state_created", table_name="tryon_jobs")
    op.drop_index("ix_tryon_jobs_created", table_name="tryon_jobs")
    for column in reversed(_job_columns()):
        op.drop_column("tryon_jobs", column.name)
