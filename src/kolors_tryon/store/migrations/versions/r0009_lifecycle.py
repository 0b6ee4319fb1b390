"""The job lifecycle: deadlines, retries, the state `cancelled`, and listing indexes.

`tryon_jobs.deadline_at` (when a job not yet at Kling is cancelled) and
`tryon_jobs.retry_of` (the job a retry repeats), both nullable: jobs recorded before
this revision have no deadline and retry nothing. The state column is a plain string
with no constraint, so `cancelled` needs no change to it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


METADATA_FUNCTION = """
CREATE OR REPLACE FUNCTION tryon_metadata_jsonb(doc json) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN doc::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    """Bring the schema from 0008 to 0009."""
    # Plain ADD COLUMNs, never a batch (see 0002: a batch on SQLite drops tryon_jobs).
    op.add_column("tryon_jobs", sa.Column("deadline_at", sa.Float(), nullable=True))
    op.add_column("tryon_jobs", sa.Column("retry_of", sa.String(length=64), nullable=True))
    op.create_index("ix_tryon_jobs_deadline", "tryon_jobs", ["deadline_at"])
    op.create_index("ix_tryon_jobs_retry_of", "tryon_jobs", ["retry_of"])
    # Listings (store/listing.py): the keyset, alone and after the state.
    op.create_index("ix_tryon_jobs_created_id", "tryon_jobs", ["created_at", "job_id"])
    op.create_index(
        "ix_tryon_jobs_state_created_id", "tryon_jobs", ["state", "created_at", "job_id"]
    )
    if op.get_bind().dialect.name == "postgresql":
        # A metadata filter is a JSONB containment (`@>`), answered by this index. The
        # column is `json`, which keeps what `jsonb` refuses (a lone surrogate escape,
        # stored before intake refused them): a plain cast would fail this migration on
        # such a row, and every later insert of one. The function gives NULL there
        # (such metadata matches no filter) and is the index's expression.
        op.execute(METADATA_FUNCTION)
        op.execute(
            "CREATE INDEX ix_tryon_jobs_metadata ON tryon_jobs "
            "USING gin (tryon_metadata_jsonb(metadata) jsonb_path_ops)"
        )


def downgrade() -> None:
    """Take the schema back from 0009 to 0008 (cancelled jobs keep their state text)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_tryon_jobs_metadata")
        op.execute("DROP FUNCTION IF EXISTS tryon_metadata_jsonb(json)")
    op.drop_index("ix_tryon_jobs_state_created_id", table_name="tryon_jobs")
    op.drop_index("ix_tryon_jobs_created_id", table_name="tryon_jobs")
    op.drop_index("ix_tryon_jobs_retry_of", table_name="tryon_jobs")
    op.drop_index("ix_tryon_jobs_deadline", table_name="tryon_jobs")
    op.drop_column("tryon_jobs", "retry_of")
    op.drop_column("tryon_jobs", "deadline_at")
