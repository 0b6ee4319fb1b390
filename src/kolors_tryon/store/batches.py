"""Batches: named sets of one producer's jobs, their counts, spend and progress.

A batch's id is its producer's own, scoped like job ids: two producers may both have a
batch `catalogue-2026`. A batch is created by `enqueue_batch()` or, implicitly, by the
first job message that names it (`batch_id`). Its counts are read from its jobs (an
index on producer, batch, state), never kept on the side, so they cannot drift; its
`finished_at` is written once, by the change that made its last job terminal, and that
write is what publishes `batch.completed` once.
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kolors_tryon.observe.metrics import parse_units
from kolors_tryon.store.database import Database
from kolors_tryon.store.queries import matched
from kolors_tryon.store.records import JobRecord, iso, record_from_row
from kolors_tryon.store.states import TERMINAL_STATES
from kolors_tryon.store.tables import BatchRow, JobRow


class BatchRecord(BaseModel):
    """A batch as its producer sees it (`GET /v1/batches/{id}`, `batch.completed`)."""

    model_config = ConfigDict(frozen=True)

    batch_id: str
    producer: str
    name: str | None = None
    jobs: int = Field(description="Jobs recorded in the batch so far.")
    counts: dict[str, int] = Field(description="Jobs by state.")
    units_spent: float = Field(description="Sum of the jobs' `final_unit_deduction`.")
    progress: float = Field(description="Share of the jobs that are terminal, 0 to 1.")
    created_at: str
    finished_at: str | None = Field(
        default=None, description="When its last job became terminal (then it is complete)."
    )


class Batches:
    """Opening, reading and completing batches."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def open(self, producer: str, batch_ids: Collection[str], name: str | None = None) -> None:
        """Make sure each batch exists (the first to name it creates it; a repeat is no-op)."""
        for batch_id in dict.fromkeys(batch_ids):
            try:
                with self._db.transaction() as (s, now):
                    exists = s.scalar(
                        select(BatchRow.seq).where(
                            BatchRow.producer == producer, BatchRow.batch_id == batch_id
                        )
                    )
                    if exists is None:
                        s.execute(
                            insert(BatchRow).values(
                                producer=producer, batch_id=batch_id, name=name, created_at=now
                            )
                        )
            except IntegrityError:
                pass  # another worker opened it first

    def get(self, producer: str, batch_id: str) -> BatchRecord | None:
        """The batch of `producer`, or None (another producer's batch is unknown)."""
        with self._db.session() as s:
            row = s.scalar(
                select(BatchRow).where(BatchRow.producer == producer, BatchRow.batch_id == batch_id)
            )
            return _record(s, row) if row is not None else None

    def page(
        self, producer: str, *, limit: int = 50, after: str | None = None
    ) -> list[BatchRecord]:
        """`producer`'s batches, newest first; `after` is the last batch id of the previous
        page (a keyset cursor on creation order)."""
        query = (
            select(BatchRow)
            .where(BatchRow.producer == producer)
            .order_by(BatchRow.seq.desc())
            .limit(limit)
        )
        if after is not None:
            cursor = (
                select(BatchRow.seq)
                .where(BatchRow.producer == producer, BatchRow.batch_id == after)
                .scalar_subquery()
            )
            query = query.where(BatchRow.seq < cursor)
        with self._db.session() as s:
            return [_record(s, row) for row in s.scalars(query)]

    def jobs(self, producer: str, batch_id: str) -> list[JobRecord]:
        """The batch's job records in intake order (for its export)."""
        with self._db.session() as s:
            rows = s.scalars(
                select(JobRow)
                .where(JobRow.producer == producer, JobRow.batch_id == batch_id)
                .order_by(JobRow.seq)
            )
            return [record_from_row(row) for row in rows]

    def complete(self, producer: str, batch_id: str) -> BatchRecord | None:
        """Mark the batch finished if every job of it is terminal; its record when this
        call did it (once, whatever the number of workers), else None."""
        with self._db.transaction() as (s, now):
            open_jobs = s.scalar(
                select(func.count()).where(
                    JobRow.producer == producer,
                    JobRow.batch_id == batch_id,
                    JobRow.state.not_in(TERMINAL_STATES),
                )
            )
            if open_jobs:
                return None
            moved = s.execute(
                update(BatchRow)
                .where(
                    BatchRow.producer == producer,
                    BatchRow.batch_id == batch_id,
                    BatchRow.finished_at.is_(None),
                )
                .values(finished_at=now)
            )
            if not matched(moved):
                return None
            row = s.scalar(
                select(BatchRow).where(BatchRow.producer == producer, BatchRow.batch_id == batch_id)
            )
            return _record(s, row) if row is not None else None


def _record(s: Session, row: BatchRow) -> BatchRecord:
    counts: dict[str, int] = {}
    units = 0.0
    for state, n in s.execute(
        select(JobRow.state, func.count())
        .where(JobRow.producer == row.producer, JobRow.batch_id == row.batch_id)
        .group_by(JobRow.state)
    ):
        counts[str(state)] = int(n)
    for (deduction,) in s.execute(
        select(JobRow.final_unit_deduction).where(
            JobRow.producer == row.producer,
            JobRow.batch_id == row.batch_id,
            JobRow.final_unit_deduction.is_not(None),
        )
    ):
        units += parse_units(deduction)
    total = sum(counts.values())
    ended = sum(n for state, n in counts.items() if state in TERMINAL_STATES)
    return BatchRecord(
        batch_id=row.batch_id,
        producer=row.producer,
        name=row.name,
        jobs=total,
        counts=counts,
        units_spent=units,
        progress=round(ended / total, 4) if total else 0.0,
        created_at=iso(row.created_at) or "",
        finished_at=iso(row.finished_at),
    )
