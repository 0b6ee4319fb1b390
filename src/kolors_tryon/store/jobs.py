"""Whole-job reads: one record, lists and pages of them, and counts."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select

from kolors_tryon.config.producers import job_key
from kolors_tryon.errors import JobNotFound
from kolors_tryon.store.database import Database
from kolors_tryon.store.queries import count_in_flight
from kolors_tryon.store.records import JobRecord, record_from_row
from kolors_tryon.store.states import JobState
from kolors_tryon.store.tables import JobRow


class Jobs:
    """Reading job records (nothing here writes)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, job_id: str, producer: str | None = None) -> JobRecord | None:
        """A job by its key, or with `producer` by that producer's own id: another
        producer's job is None, as an unknown one is (it must learn nothing of it). The
        record names the retries of the job (an index lookup)."""
        key = job_id if producer is None else job_key(producer, job_id)
        with self._db.session() as s:
            row = s.scalar(select(JobRow).where(JobRow.job_id == key))
            if row is None or (producer is not None and row.producer != producer):
                return None
            record = record_from_row(row)
            retries = list(
                s.scalars(select(JobRow.job_id).where(JobRow.retry_of == key).order_by(JobRow.seq))
            )
        return record.model_copy(update={"retried_by": retries}) if retries else record

    def oldest_first(
        self,
        state: JobState | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
        producer: str | None = None,
    ) -> list[JobRecord]:
        """Jobs, oldest first, optionally of one state (and only `producer`'s)."""
        query = select(JobRow).order_by(JobRow.seq).limit(limit).offset(offset)
        if state is not None:
            query = query.where(JobRow.state == state)
        if producer is not None:
            query = query.where(JobRow.producer == producer)
        with self._db.session() as s:
            return [record_from_row(row) for row in s.scalars(query)]

    def page(
        self,
        state: JobState | None = None,
        *,
        limit: int = 100,
        after: str | None = None,
        metadata: Mapping[str, str] | None = None,
        producer: str | None = None,
    ) -> list[JobRecord]:
        """Jobs newest first, a page at a time, optionally of one state and metadata.

        Args:
            state: Only jobs in this state.
            limit: The page's size.
            after: The job id the previous page ended with: this page starts after it
                (a keyset cursor on the intake order, stable while new jobs arrive).
            metadata: Only jobs whose metadata holds each of these keys with this value
                (compared as text).
            producer: Only this producer's jobs (`after` is then its own job id).
        """
        query = select(JobRow).order_by(JobRow.seq.desc()).limit(limit)
        if state is not None:
            query = query.where(JobRow.state == state)
        if producer is not None:
            query = query.where(JobRow.producer == producer)
        if after is not None:
            key = after if producer is None else job_key(producer, after)
            cursor = select(JobRow.seq).where(JobRow.job_id == key).scalar_subquery()
            query = query.where(JobRow.seq < cursor)
        for key, value in (metadata or {}).items():
            query = query.where(JobRow.job_metadata[key].as_string() == value)
        with self._db.session() as s:
            return [record_from_row(row) for row in s.scalars(query)]

    def count_by_state(self) -> dict[str, int]:
        with self._db.session() as s:
            rows = s.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all()
        return {str(state): int(n) for state, n in rows}

    def in_flight(self) -> int:
        """Account slots held: jobs being submitted or run, and lingering tasks."""
        with self._db.session() as s:
            return count_in_flight(s)

    def require(self, job_id: str, producer: str | None = None) -> JobRecord:
        """The job's record; `JobNotFound` (a `LookupError`) when there is no such job."""
        record = self.get(job_id, producer)
        if record is None:
            raise JobNotFound(job_id)
        return record
