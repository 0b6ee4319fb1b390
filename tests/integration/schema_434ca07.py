"""The job store's tables as commit 434ca07 created them (`create_all`, no migrations).

A frozen copy, never to be edited: the migration tests build a store of that era from
it, fill it, and upgrade it. Revision 0001 must produce exactly this schema.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

METADATA = MetaData()
BIG = BigInteger().with_variant(Integer, "sqlite")

JOBS = Table(
    "tryon_jobs",
    METADATA,
    Column("seq", BIG, primary_key=True, autoincrement=True),
    Column("job_id", String(64), unique=True, nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, default=0, nullable=False),
    Column("model_name", String(64)),
    Column("kling_task_id", String(128)),
    Column("images", JSON),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("attempts", Integer, default=0, nullable=False),
    Column("retries", Integer, default=0, nullable=False),
    Column("create_pending", Boolean, default=False, nullable=False),
    Column("polls", Integer, default=0, nullable=False),
    Column("final_unit_deduction", String(32)),
    Column("metadata", JSON),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    Column("attempt_until", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("submitted_at", Float),
    Column("polled_at", Float),
    Column("finished_at", Float),
    Index("ix_tryon_jobs_queue", "state", "priority", "seq"),
)

PAYLOADS = Table(
    "tryon_payloads",
    METADATA,
    Column(
        "job_id",
        String(64),
        ForeignKey("tryon_jobs.job_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("body", Text, nullable=False),
)

ACCOUNT = Table(
    "tryon_account",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("version", BIG, default=0, nullable=False),  # Mapped[int]: NOT NULL
    Column("paused_until", Float),
    Column("pause_code", String(64)),
    Column("pause_message", Text),
    Column("last_sweep_at", Float),
)
