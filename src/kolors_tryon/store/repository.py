"""The job store: every read and write of job state, on SQLite or PostgreSQL.

Design notes (why it looks like this):
- Each state change is one conditional UPDATE whose WHERE lists the states it may come
  from (`states.allowed_sources`): forward-only moves hold even with racing workers.
- Claiming account slots takes a write lock on the single `tryon_account` row first, so
  that counting in-flight jobs and claiming queued ones is serialized across every worker
  on both databases (on SQLite the UPDATE takes the database write lock; on PostgreSQL the
  row lock). The slot count is derived from job states, never kept as a separate counter,
  so a crashed worker cannot leak one: its job is still in a state that says where it is.
- A claim carries an owner (the Celery task id that will submit the job) and a lease:
  only the owner may send the create call, and a lease that ran out is taken over.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, create_engine, delete, event, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from kolors_tryon.store.records import JobRecord, ResultImage, record_from_row
from kolors_tryon.store.states import (
    IN_FLIGHT_STATES,
    TRACKED_STATES,
    JobState,
    allowed_sources,
)
from kolors_tryon.store.tables import AccountRow, Base, JobRow, PayloadRow

ACCOUNT_ROW_ID = 1


def _claimed_by(job_id: str, owner: str) -> tuple[ColumnElement[bool], ...]:
    """WHERE clauses: the job is being submitted and `owner` holds its claim."""
    return (
        JobRow.job_id == job_id,
        JobRow.state == JobState.SUBMITTING,
        JobRow.lease_owner == owner,
    )


@dataclass(frozen=True)
class Claim:
    """A queued job that got an account slot; `owner` is who may submit it."""

    job_id: str
    owner: str


@dataclass(frozen=True)
class CreatePlan:
    """What the owner of a claim needs to send the create call."""

    job_id: str
    body: dict[str, Any]
    # A create for this job may already have reached Kling: look it up before resending.
    maybe_created: bool
    attempts: int
    retries: int


@dataclass(frozen=True)
class AccountPause:
    """Submissions are stopped for the whole account (out of units, bad credentials)."""

    code: str
    message: str
    until: float


def make_engine(url: str) -> Engine:
    """An engine tuned for concurrent workers: WAL and a busy timeout on SQLite."""
    if url.startswith("sqlite"):
        # hide_parameters: an error message must never carry a job's photos or metadata.
        engine = create_engine(url, connect_args={"timeout": 60}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, hide_parameters=True)


class JobStore:
    """All job state, behind methods named after what the pipeline needs."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        return cls(make_engine(url))

    def dispose(self) -> None:
        """Drop pooled connections (after a fork, or at shutdown)."""
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def create_schema(self) -> None:
        """Create the tables and the account row; safe to run from many workers at once."""
        Base.metadata.create_all(self.engine)
        try:
            with self._tx() as s:
                if s.get(AccountRow, ACCOUNT_ROW_ID) is None:
                    s.add(AccountRow(id=ACCOUNT_ROW_ID, version=0))
        except IntegrityError:
            pass  # another worker created it first

    # ---------------------------------------------------------------- intake ----------
    def accept(
        self,
        job_id: str,
        *,
        body: Mapping[str, Any],
        priority: int = 0,
        model_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[JobRecord, bool]:
        """Record a valid job as `queued` with its create body. Returns (record, created)."""
        row = self._new_row(job_id, JobState.QUEUED, metadata)
        row.priority = priority
        row.model_name = model_name
        return self._insert(row, PayloadRow(job_id=job_id, body=json.dumps(dict(body))))

    def reject(
        self,
        job_id: str,
        *,
        code: str,
        message: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[JobRecord, bool]:
        """Record a job that never reaches the API. An existing job with this id is kept."""
        row = self._new_row(job_id, JobState.REJECTED, metadata)
        row.error_code = code
        row.error_message = message
        row.finished_at = row.created_at
        return self._insert(row, None)

    def _new_row(self, job_id: str, state: JobState, metadata: Mapping[str, Any] | None) -> JobRow:
        now = self._clock()
        return JobRow(
            job_id=job_id,
            state=state,
            job_metadata=dict(metadata or {}),
            created_at=now,
            updated_at=now,
        )

    def _insert(self, row: JobRow, payload: PayloadRow | None) -> tuple[JobRecord, bool]:
        """Insert a new job; the unique job_id makes a second insert a no-op."""
        job_id = row.job_id
        try:
            with self._tx() as s:
                s.add(row)
                if payload is not None:
                    s.flush()  # the payload's foreign key needs the job row first
                    s.add(payload)
        except IntegrityError:
            return self._require(job_id), False
        return self._require(job_id), True

    # ---------------------------------------------------------------- reading ---------
    def get(self, job_id: str) -> JobRecord | None:
        with self._sessions() as s:
            row = s.scalar(select(JobRow).where(JobRow.job_id == job_id))
            return record_from_row(row) if row is not None else None

    def _require(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if record is None:  # pragma: no cover - only after a concurrent delete
            raise LookupError(f"job {job_id!r} is not in the store")
        return record

    def list_jobs(
        self, state: JobState | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[JobRecord]:
        """Jobs, oldest first, optionally of one state."""
        query = select(JobRow).order_by(JobRow.seq).limit(limit).offset(offset)
        if state is not None:
            query = query.where(JobRow.state == state)
        with self._sessions() as s:
            return [record_from_row(row) for row in s.scalars(query)]

    def count_by_state(self) -> dict[str, int]:
        with self._sessions() as s:
            rows = s.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all()
        return {str(state): int(n) for state, n in rows}

    def in_flight(self) -> int:
        with self._sessions() as s:
            return int(
                s.scalar(select(func.count()).where(JobRow.state.in_(IN_FLIGHT_STATES))) or 0
            )

    # ---------------------------------------------------------------- slots -----------
    def claim_next(
        self,
        max_in_flight: int,
        *,
        lease_seconds: float,
        new_owner: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> list[Claim]:
        """Give free account slots to the oldest queued jobs (highest priority first)."""
        now = self._clock()
        with self._tx() as s:
            account = self._lock_account(s)
            in_flight = int(
                s.scalar(select(func.count()).where(JobRow.state.in_(IN_FLIGHT_STATES))) or 0
            )
            free = max_in_flight - in_flight
            if account.pause_code is not None:
                # Paused: only a probe may go, once it is due, and only if no job that
                # could serve as the probe is already being submitted.
                submitting = s.scalar(
                    select(func.count()).where(JobRow.state == JobState.SUBMITTING)
                )
                due = (account.paused_until or 0) <= now
                free = min(free, 1) if due and not submitting else 0
            if free <= 0:
                return []
            job_ids = list(
                s.scalars(
                    select(JobRow.job_id)
                    .where(JobRow.state == JobState.QUEUED)
                    .order_by(JobRow.priority.desc(), JobRow.seq)
                    .limit(free)
                )
            )
            claims = []
            for job_id in job_ids:
                owner = new_owner()
                moved = s.execute(
                    update(JobRow)
                    .where(JobRow.job_id == job_id, JobRow.state == JobState.QUEUED)
                    .values(
                        state=JobState.SUBMITTING,
                        lease_owner=owner,
                        lease_until=now + lease_seconds,
                        updated_at=now,
                    )
                )
                if moved.rowcount == 1:  # type: ignore[attr-defined]
                    claims.append(Claim(job_id, owner))
            return claims

    def _lock_account(self, s: Session) -> AccountRow:
        s.execute(
            update(AccountRow)
            .where(AccountRow.id == ACCOUNT_ROW_ID)
            .values(version=AccountRow.version + 1)
        )
        account = s.scalar(select(AccountRow).where(AccountRow.id == ACCOUNT_ROW_ID))
        if account is None:
            raise LookupError("the account row is missing: run create_schema() first")
        return account

    def expired_claims(self, *, limit: int = 100) -> list[str]:
        """Jobs being submitted whose claim ran out: their owner died or its message is gone."""
        now = self._clock()
        with self._sessions() as s:
            return list(
                s.scalars(
                    select(JobRow.job_id)
                    .where(JobRow.state == JobState.SUBMITTING, JobRow.lease_until < now)
                    .order_by(JobRow.seq)
                    .limit(limit)
                )
            )

    def take_over(self, job_id: str, new_owner: str, *, lease_seconds: float) -> bool:
        """Move an expired claim to a new owner (the old owner's messages then do nothing)."""
        now = self._clock()
        with self._tx() as s:
            moved = s.execute(
                update(JobRow)
                .where(
                    JobRow.job_id == job_id,
                    JobRow.state == JobState.SUBMITTING,
                    JobRow.lease_until < now,
                )
                .values(lease_owner=new_owner, lease_until=now + lease_seconds, updated_at=now)
            )
            return moved.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def extend_claim(self, job_id: str, owner: str, until: float) -> bool:
        """Keep a claim while its owner waits for a retry (the wait may outlast the lease)."""
        with self._tx() as s:
            moved = s.execute(
                update(JobRow)
                .where(
                    *_claimed_by(job_id, owner),
                )
                .values(lease_until=until)
            )
            return moved.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    # ---------------------------------------------------------------- submitting ------
    def enter_submit(
        self, job_id: str, owner: str, *, busy_for: float
    ) -> CreatePlan | float | None:
        """Start one submit run for the claim's owner.

        Returns the plan to act on; or, when another run of the same owner is mid-attempt
        (a redelivered message while the first run may still be sending), the time at
        which that attempt's window ends; or None when `owner` does not hold the claim
        (a duplicate message, or the job has moved on): then there is nothing to do.
        """
        now = self._clock()
        with self._tx() as s:
            row = s.scalar(
                select(JobRow).where(
                    *_claimed_by(job_id, owner),
                )
            )
            if row is None:
                return None
            if row.attempt_until is not None and row.attempt_until > now:
                return row.attempt_until
            payload = s.get(PayloadRow, job_id)
            if payload is None:  # pragma: no cover - the payload lives until submission
                raise LookupError(f"job {job_id!r} has no create body")
            row.attempt_until = now + busy_for
            row.lease_until = max(row.lease_until or 0, now + busy_for)
            return CreatePlan(
                job_id=job_id,
                body=json.loads(payload.body),
                maybe_created=row.create_pending,
                attempts=row.attempts,
                retries=row.retries,
            )

    def leave_submit(self, job_id: str, owner: str) -> None:
        """End the run started by `enter_submit` (whatever its outcome)."""
        with self._tx() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.job_id == job_id, JobRow.lease_owner == owner)
                .values(attempt_until=None)
            )

    def record_intent(self, job_id: str, owner: str) -> None:
        """Written *before* the paid POST: from now on the job may have a Kling task."""
        with self._tx() as s:
            s.execute(
                update(JobRow)
                .where(
                    *_claimed_by(job_id, owner),
                )
                .values(create_pending=True, attempts=JobRow.attempts + 1, updated_at=self._clock())
            )

    def note_failed_create(
        self, job_id: str, owner: str, *, nothing_created: bool, spend_retry: bool
    ) -> int:
        """Record a create attempt that got no task id. Returns the retries spent so far.

        Args:
            nothing_created: the answer proves no task was made, so the next run need
                not look one up first.
            spend_retry: the failure counts against the job's retry budget.
        """
        with self._tx() as s:
            row = s.scalar(
                select(JobRow).where(JobRow.job_id == job_id, JobRow.lease_owner == owner)
            )
            if row is None:
                return 0
            if nothing_created:
                row.create_pending = False
            if spend_retry:
                row.retries += 1
            return row.retries

    def mark_submitted(
        self, job_id: str, owner: str, *, task_id: str, processing: bool = False
    ) -> JobRecord | None:
        """Kling accepted the job: keep its task id, forget the photos."""
        now = self._clock()
        target = JobState.PROCESSING if processing else JobState.SUBMITTED
        with self._tx() as s:
            moved = s.execute(
                update(JobRow)
                .where(
                    *_claimed_by(job_id, owner),
                )
                .values(
                    state=target,
                    kling_task_id=task_id,
                    create_pending=False,
                    attempt_until=None,
                    lease_owner=None,
                    lease_until=None,
                    submitted_at=now,
                    updated_at=now,
                )
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return None
            s.execute(delete(PayloadRow).where(PayloadRow.job_id == job_id))
        return self.get(job_id)

    # ---------------------------------------------------------------- tracking --------
    def mark_processing(self, job_id: str) -> JobRecord | None:
        return self._move(job_id, JobState.PROCESSING)

    def enter_poll(self, job_id: str, poll: int) -> bool:
        """Take poll number `poll` of a tracked job; False if another message took it.

        The poll count is the fence of the tracking chain: each track message carries the
        number it expects, so a duplicated or redelivered message cannot fork the chain.
        """
        now = self._clock()
        with self._tx() as s:
            moved = s.execute(
                update(JobRow)
                .where(
                    JobRow.job_id == job_id,
                    JobRow.polls == poll,
                    JobRow.state.in_(TRACKED_STATES),
                )
                .values(polls=poll + 1, polled_at=now)
            )
            return moved.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def stale_tracked(self, *, older_than: float, limit: int = 100) -> list[tuple[str, int]]:
        """Tracked jobs nobody has polled for a while, with the poll number to send next."""
        cutoff = self._clock() - older_than
        with self._sessions() as s:
            rows = s.execute(
                select(JobRow.job_id, JobRow.polls)
                .where(
                    JobRow.state.in_(TRACKED_STATES),
                    func.coalesce(JobRow.polled_at, JobRow.submitted_at) < cutoff,
                )
                .order_by(JobRow.seq)
                .limit(limit)
            ).all()
        return [(job_id, int(polls)) for job_id, polls in rows]

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        images: list[ResultImage] | None = None,
        final_unit_deduction: str | None = None,
        owner: str | None = None,
    ) -> JobRecord | None:
        """Move a job to a terminal state; returns None if it was already there."""
        values: dict[str, Any] = {
            "error_code": error_code,
            "error_message": error_message,
            "finished_at": self._clock(),
            "lease_owner": None,
            "lease_until": None,
            "create_pending": False,
            "attempt_until": None,
        }
        if images is not None:
            values["images"] = [img.model_dump() for img in images]
        if final_unit_deduction is not None:
            values["final_unit_deduction"] = final_unit_deduction
        return self._move(job_id, state, owner=owner, drop_payload=True, **values)

    def _move(
        self,
        job_id: str,
        target: JobState,
        *,
        owner: str | None = None,
        drop_payload: bool = False,
        **values: Any,
    ) -> JobRecord | None:
        """The single place where a state changes: only forward, only from allowed states."""
        now = self._clock()
        with self._tx() as s:
            query = update(JobRow).where(
                JobRow.job_id == job_id, JobRow.state.in_(allowed_sources(target))
            )
            if owner is not None:
                query = query.where(JobRow.lease_owner == owner)
            moved = s.execute(query.values(state=target, updated_at=now, **values))
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return None
            if drop_payload:
                s.execute(delete(PayloadRow).where(PayloadRow.job_id == job_id))
        return self.get(job_id)

    # ---------------------------------------------------------------- account pause ---
    def current_pause(self) -> AccountPause | None:
        with self._sessions() as s:
            row = s.get(AccountRow, ACCOUNT_ROW_ID)
            if row is None or row.pause_code is None:
                return None
            return AccountPause(row.pause_code, row.pause_message or "", row.paused_until or 0)

    def pause(self, code: str, message: str, *, until: float) -> None:
        """Stop every submission until `until`, when one probe may try again."""
        with self._tx() as s:
            account = self._lock_account(s)
            account.pause_code = code
            account.pause_message = message
            account.paused_until = until

    def take_probe(self, *, next_probe: float) -> bool:
        """Become the one submission allowed through a due pause. False: wait."""
        now = self._clock()
        with self._tx() as s:
            moved = s.execute(
                update(AccountRow)
                .where(
                    AccountRow.id == ACCOUNT_ROW_ID,
                    AccountRow.pause_code.is_not(None),
                    AccountRow.paused_until <= now,
                )
                .values(paused_until=next_probe)
            )
            return moved.rowcount == 1  # type: ignore[attr-defined,no-any-return]

    def clear_pause(self) -> bool:
        with self._tx() as s:
            moved = s.execute(
                update(AccountRow)
                .where(AccountRow.id == ACCOUNT_ROW_ID, AccountRow.pause_code.is_not(None))
                .values(pause_code=None, pause_message=None, paused_until=None)
            )
            return moved.rowcount == 1  # type: ignore[attr-defined,no-any-return]
