"""SQLAlchemy tables of the job store.

Timestamps are stored as Unix seconds (float) so that SQLite and PostgreSQL behave the
same without time-zone surprises; records expose them as ISO 8601 UTC strings.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the job store's tables."""


class JobRow(Base):
    """One row per job_id: its state, its Kling task, its outcome."""

    __tablename__ = "tryon_jobs"

    # `seq` orders waiting jobs first in, first out (within a priority).
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    # The job's key: the producer's own job id for `default`, a stable derivation for
    # other producers (config/producers.py `job_key`); Kling's `external_task_id`.
    job_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    # Whose job it is, and the id that producer gave it (what it reads the job by).
    producer: Mapped[str] = mapped_column(
        String(64), default="default", server_default="default", nullable=False
    )
    producer_job_id: Mapped[str | None] = mapped_column(String(64))
    # The producer's batch this job belongs to (tryon_batches: producer, batch_id).
    batch_id: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    priority: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    model_name: Mapped[str | None] = mapped_column(String(64))
    kling_task_id: Mapped[str | None] = mapped_column(String(128))
    images: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # Create calls made for this job (each one an `intent` recorded before the POST).
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    # Transient failures (5xxx, 1302, network) spent from the retry budget.
    retries: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    # True from the moment a create is about to be sent until its answer is known: a job
    # found in this state may already have a Kling task, so it is queried before resending.
    create_pending: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    # When the latest intent was written (database clock).
    intent_at: Mapped[float | None] = mapped_column(Float)
    # Set when an attempt ended without proof either way (a timeout, a 5xxx, a dropped
    # answer, a worker that died mid-POST): a Kling task may exist. A lookup that answers
    # "not found" proves nothing before this time (the API may not show the task yet);
    # it is cleared only by adopting the task or by a "not found" after it.
    unresolved_until: Mapped[float | None] = mapped_column(Float)
    polls: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    final_unit_deduction: Mapped[str | None] = mapped_column(String(32))
    job_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    # SHA-256 of the message as published: tells a repeat of the same job from another
    # job sent under the same id.
    content_hash: Mapped[str | None] = mapped_column(String(64))
    # Messages that came under this id with other content (and were not taken), and the
    # last such note; a resubmission of a `rejected` job is counted apart.
    conflicts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    resubmissions: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    # A job failed by our tracking deadline while its Kling task may still run: it keeps
    # counting against the account's slots until Kling reports the task's end.
    lingering: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    # Who may submit the job now (a Celery task id) and until when the claim holds.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[float | None] = mapped_column(Float)
    # Set while one run of the owner's task is between reading the plan and recording the
    # answer: a second run with the same owner (a redelivery) waits instead of racing it.
    attempt_until: Mapped[float | None] = mapped_column(Float)
    # The producer's webhook target and the states it asked for (None: the terminal
    # ones), kept at accept and at reject time: rejected jobs get their webhook too.
    # The states are stored as ",submitted,succeeded," so that the sweep can ask "did
    # this job want a webhook of its state?" in SQL (LIKE) on SQLite and PostgreSQL alike.
    callback_url: Mapped[str | None] = mapped_column(Text)
    webhook_events: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
    submitted_at: Mapped[float | None] = mapped_column(Float)
    polled_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    # When the job was reported overdue: its task outlived `track_deadline` and is still
    # followed (a flag, not a state: the job is still `submitted` or `processing`, and a
    # state never moves backwards from whatever Kling says next).
    overdue_at: Mapped[float | None] = mapped_column(Float)
    # A person's verdict on a succeeded job in the review console (`approved`/`rejected`),
    # who gave it and when: set once (the `job.reviewed` event and webhook go out once).
    review_state: Mapped[str | None] = mapped_column(String(16))
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[float | None] = mapped_column(Float)
    # The producer's deadline (database clock): a job not at Kling by then is cancelled,
    # and no create is sent after it (the intent's fence checks it).
    deadline_at: Mapped[float | None] = mapped_column(Float)
    # The job this one retries (`tryon retry`): the old record lists its retries by it.
    retry_of: Mapped[str | None] = mapped_column(String(64))
    # The pool account the job's claim went to (docs/accounts.md): set with the claim,
    # never changed once a create may have been made. `account_pin`: the job asked for
    # that account (its `account` field) and waits for it.
    account: Mapped[str | None] = mapped_column(String(32))
    account_pin: Mapped[str | None] = mapped_column(String(32))


# The claim query reads `state = queued ORDER BY priority DESC, seq`: the index has the
# same order, so taking the next jobs stays an index range scan at any backlog. Written
# with the columns' own `.desc()` (not a text clause) so that Alembic's comparison of the
# migrated schema with these tables can see it (tests/integration/test_migrations.py).
Index("ix_tryon_jobs_claim", JobRow.state, JobRow.priority.desc(), JobRow.seq)
# Fair share: the queued jobs of each producer in their claim order (pipeline/dispatch).
Index(
    "ix_tryon_jobs_producer_claim",
    JobRow.state,
    JobRow.producer,
    JobRow.priority.desc(),
    JobRow.seq,
)
# A producer's jobs, newest first (its listings), and its day's spend (budgets).
Index("ix_tryon_jobs_producer", JobRow.producer, JobRow.seq)
# A batch's jobs, for its counts.
Index("ix_tryon_jobs_batch", JobRow.producer, JobRow.batch_id, JobRow.state)
# The sweep looks for recently ended jobs whose webhook was never planned.
Index("ix_tryon_jobs_finished", JobRow.finished_at)
# The console pages jobs newest first by (created_at, seq) keyset, all of them or one
# state's: both orders are index range scans at 1,000,000 jobs (store/console_reads.py).
Index("ix_tryon_jobs_created", JobRow.created_at, JobRow.seq)
Index("ix_tryon_jobs_state_created", JobRow.state, JobRow.created_at, JobRow.seq)
# Slots held by lingering tasks are counted on every claim and console page: without it
# the count walks every `failed` job (50,000 of a million: 140 ms, bench/console.py).
Index(
    "ix_tryon_jobs_lingering",
    JobRow.state,
    postgresql_where=JobRow.lingering.is_(True),
    sqlite_where=JobRow.lingering.is_(True),
)
# The deadline sweep looks for waiting jobs whose deadline passed; few jobs have one.
Index("ix_tryon_jobs_deadline", JobRow.deadline_at)
# A record names its retries: the jobs whose `retry_of` is its id.
Index("ix_tryon_jobs_retry_of", JobRow.retry_of)
# Listings, newest first on the keyset (created_at, job_id), all jobs or of one state
# (store/listing.py). A metadata filter uses a GIN index on PostgreSQL that the
# migration alone creates (`ix_tryon_jobs_metadata`, an expression index: autogenerate
# neither compares nor builds those).
Index("ix_tryon_jobs_created_id", JobRow.created_at, JobRow.job_id)
Index("ix_tryon_jobs_state_created_id", JobRow.state, JobRow.created_at, JobRow.job_id)


class PayloadRow(Base):
    """The create body (with the people's photos) kept only until the job is submitted."""

    __tablename__ = "tryon_payloads"

    job_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("tryon_jobs.job_id", ondelete="CASCADE"), primary_key=True
    )
    body: Mapped[str] = mapped_column(Text, nullable=False)


class AccountRow(Base):
    """A single row: the lock that serializes slot claims, and the account's pause."""

    __tablename__ = "tryon_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    paused_until: Mapped[float | None] = mapped_column(Float)
    pause_code: Mapped[str | None] = mapped_column(String(64))
    pause_message: Mapped[str | None] = mapped_column(Text)
    last_sweep_at: Mapped[float | None] = mapped_column(Float)
    # When a worker last deleted expired Celery task results (no beat is deployed).
    results_cleaned_at: Mapped[float | None] = mapped_column(Float)


class PoolAccountRow(Base):
    """One row per account of a configured pool: its pause and probe (store/accounts.py).

    The single-account configuration has no rows here: its pause stays on `AccountRow`.
    """

    __tablename__ = "tryon_pool_accounts"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    paused_until: Mapped[float | None] = mapped_column(Float)
    pause_code: Mapped[str | None] = mapped_column(String(64))
    pause_message: Mapped[str | None] = mapped_column(Text)
    # After a 1303 (its slots are busy elsewhere): no new claim on it before this.
    busy_until: Mapped[float | None] = mapped_column(Float)


class ResultCopyRow(Base):
    """A succeeded job whose result copies are still to be made (one row per job).

    A table of its own rather than a column of `tryon_jobs`, so that finding the copies
    still missing is an index scan at any number of jobs. The row goes once every image
    is stored; `due_at` NULL means the copy was given up for good (`last_error` says why:
    not an image, too large, a URL that answers 4xx).
    """

    __tablename__ = "tryon_result_copies"
    __table_args__ = (Index("ix_tryon_result_copies_due", "due_at"),)

    job_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("tryon_jobs.job_id", ondelete="CASCADE"), primary_key=True
    )
    # Failed tries so far (grows the backoff), when the next try is due (database clock).
    tries: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    due_at: Mapped[float | None] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(Text)


class SecretRow(Base):
    """Secrets the service generates once and every process shares (callback tokens,
    webhook signing), for deployments that do not configure them."""

    __tablename__ = "tryon_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)


class WebhookDeliveryRow(Base):
    """One webhook to deliver: a job's record in one state, to the producer's URL.

    The id is derived from (job, state, round), so it is the `webhook-id` receivers
    de-duplicate on, and creating the same delivery twice is one row.
    """

    __tablename__ = "tryon_webhook_deliveries"
    __table_args__ = (
        Index("ix_tryon_webhook_deliveries_due", "status", "next_at"),
        Index("ix_tryon_webhook_deliveries_job", "job_id", "state", "round"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    # The job's resubmissions when it reached the state: a rejected job sent again and
    # rejected again is a new delivery.
    round: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    url_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    # Exactly the bytes sent (and signed): the record as it was at the state change.
    body: Mapped[str] = mapped_column(Text, nullable=False)
    # pending, delivered, failed (schedule spent), gone (410), skipped (URL gone before).
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    # Attempts in the current round (a replay starts a new one); every attempt ever
    # made is a row of tryon_webhook_attempts.
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    next_at: Mapped[float] = mapped_column(Float, nullable=False)
    # The fence of one attempt: who holds it and until when nobody else may POST.
    attempting_until: Mapped[float | None] = mapped_column(Float)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
    finished_at: Mapped[float | None] = mapped_column(Float)


class WebhookAttemptRow(Base):
    """One POST of a delivery: when, how it ended, how long it took."""

    __tablename__ = "tryon_webhook_attempts"
    __table_args__ = (Index("ix_tryon_webhook_attempts_delivery", "delivery_id", "seq"),)

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    delivery_id: Mapped[str] = mapped_column(
        String(64),
        ForeignKey("tryon_webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    )
    at: Mapped[float] = mapped_column(Float, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    error: Mapped[str | None] = mapped_column(Text)


class ThumbnailRow(Base):
    """A 256 px JPEG of one input photo (`person` or `garment`), kept for the console.

    The full inputs are never kept past submission (`PayloadRow`); these small copies let
    a reviewer see what was asked for. `tryon forget` deletes them with the job's photos.
    """

    __tablename__ = "tryon_thumbnails"

    job_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("tryon_jobs.job_id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class GoneUrlRow(Base):
    """A webhook URL that answered 410 Gone: nothing more is POSTed to it until a replay."""

    __tablename__ = "tryon_webhook_gone"

    url_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[float] = mapped_column(Float, nullable=False)


class ProducerDayRow(Base):
    """A producer that reached its daily budget on a day (UTC, database clock).

    Written by the claim that first found the producer at its budget; `announced` turns
    true once its `producer.budget_reached` event is handed to the broker (by the sweep),
    so the event goes once per producer and day whatever the number of workers.
    """

    __tablename__ = "tryon_producer_days"

    producer: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)  # days since 1970-01-01
    budget: Mapped[float] = mapped_column(Float, nullable=False)
    spent: Mapped[float] = mapped_column(Float, nullable=False)
    reached_at: Mapped[float] = mapped_column(Float, nullable=False)
    announced: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)


class BatchRow(Base):
    """A named set of one producer's jobs; its id is the producer's own (scoped as job
    ids are). `finished_at` is set once, when every one of its jobs is terminal."""

    __tablename__ = "tryon_batches"
    __table_args__ = (
        UniqueConstraint("producer", "batch_id"),
        Index("ix_tryon_batches_listing", "producer", "seq"),
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    producer: Mapped[str] = mapped_column(String(64), nullable=False)
    batch_id: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    finished_at: Mapped[float | None] = mapped_column(Float)
