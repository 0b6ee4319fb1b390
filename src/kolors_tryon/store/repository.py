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
  only the owner may send the create call, and a lease that ran out is taken over. The
  owner writes its intent to create with a conditional UPDATE that also checks the
  lease, and that write opens an attempt window during which nobody may take over:
  so an owner that lost its claim can never send the create. A claim made in a worker
  has the worker's holder id before its owner's uuid: the worker's heartbeat renews
  its short lease by that prefix, and a stopping worker hands it back by it
  (`renew_claims`, `take_over_all`, pipeline/holder.py).
- Every time that another worker compares (leases, windows, pauses, deadlines) is read
  from the database's clock (`store/clock.py`), never from the worker's own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.elements import BindParameter

from kolors_tryon.store.clock import StoreClock
from kolors_tryon.store.migrate import upgrade_schema
from kolors_tryon.store.records import JobRecord, ResultImage, record_from_row
from kolors_tryon.store.states import (
    IN_FLIGHT_STATES,
    TERMINAL_STATES,
    TRACKED_STATES,
    JobState,
    allowed_sources,
)
from kolors_tryon.store.tables import (
    AccountRow,
    JobRow,
    PayloadRow,
    ResultCopyRow,
    SecretRow,
    ThumbnailRow,
)
from kolors_tryon.store.webhooks import WebhookDeliveries, events_column

ACCOUNT_ROW_ID = 1
# The tables themselves, for Core statements (executemany, no ORM objects to build).
_JOBS = cast(Table, JobRow.__table__)
_PAYLOADS = cast(Table, PayloadRow.__table__)
# The attributes of `JobRow` whose column is named otherwise.
_JOBS_ATTRIBUTE_COLUMNS = {"job_metadata": "metadata"}
# Every column of the jobs table, labelled with its attribute name.
_COLUMN_ATTRIBUTES = {column: attribute for attribute, column in _JOBS_ATTRIBUTE_COLUMNS.items()}
_ROW_COLUMNS = tuple(c.label(_COLUMN_ATTRIBUTES.get(c.key, c.key)) for c in _JOBS.c)


def _claimed_rows() -> Update:
    """An UPDATE of the claimed job rows `_claimed_by` names, for executemany: the job
    id and owner are the parameters `b_job` and `b_owner` of each row."""
    return update(_JOBS).where(
        _JOBS.c.job_id == bindparam("b_job"),
        _JOBS.c.state == JobState.SUBMITTING,
        _JOBS.c.lease_owner == bindparam("b_owner"),
    )


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
    # The job as the claim left it (`submitting`), for its event; None when not read.
    record: JobRecord | None = None


@dataclass(frozen=True)
class AccountPause:
    """Submissions are stopped for the whole account (out of units, bad credentials).

    `remaining` is the number of seconds until the next probe may go (0 when due).
    """

    code: str
    message: str
    remaining: float


@dataclass(frozen=True)
class CreatePlan:
    """What the owner of a claim needs to send the create call.

    Attributes:
        maybe_created: a create for this job may already have reached Kling: look it up
            before sending anything.
        trust_not_found_in: seconds until a "not found" from that lookup proves that no
            task exists (the API may take a while to show a new task); 0 when it does now.
        attempts: creates sent so far; retries: transient failures spent of the budget.
        pause: the account's pause as the same transaction saw it (None: not paused).
    """

    job_id: str
    body: dict[str, Any]
    maybe_created: bool
    trust_not_found_in: float
    attempts: int
    retries: int
    pause: AccountPause | None = None


@dataclass(frozen=True)
class Created:
    """A create Kling accepted: the claim it was sent under and the task it made."""

    job_id: str
    owner: str
    task_id: str
    processing: bool = False


@dataclass(frozen=True)
class Busy:
    """Another run of the same owner is mid-attempt: wait `wait` seconds, then look."""

    wait: float


class Admission(StrEnum):
    """What intake did with a message under a job id."""

    CREATED = "created"  # a new job
    DUPLICATE = "duplicate"  # the same job again: nothing to do
    CONFLICT = "conflict"  # other content under a taken id: not taken, counted, noted
    RESUBMITTED = "resubmitted"  # other content for a rejected job: it starts over


@dataclass(frozen=True)
class NewJob:
    """A valid job to record `queued`: the arguments of `JobStore.accept`."""

    job_id: str
    body: Mapping[str, Any]
    content_hash: str | None = None
    priority: int = 0
    model_name: str | None = None
    metadata: Mapping[str, Any] | None = None
    callback_url: str | None = None
    webhook_events: Sequence[str] | None = None


@dataclass(frozen=True)
class Admitted:
    record: JobRecord
    outcome: Admission

    @property
    def changed(self) -> bool:
        """The record changed (an event is due)."""
        return self.outcome is not Admission.DUPLICATE


@dataclass(frozen=True)
class Forgotten:
    """What `JobStore.forget` did to a job's record.

    Attributes:
        record: the record as it is now.
        locations: the stored copies the record named (the caller deletes them).
        in_flight: the job is at Kling now: nothing was cleared.
        payload_deleted: the create body (the Base64 photos) was still there.
        changed: something was cleared (False: it had been forgotten already).
    """

    record: JobRecord
    locations: tuple[str, ...]
    in_flight: bool
    payload_deleted: bool = False
    changed: bool = False


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
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        hide_parameters=True,
        # A database host that does not answer must fail the call (and the task waits
        # and retries), not hang a worker process for the kernel's TCP timeout.
        connect_args={"connect_timeout": 10},
    )


class JobStore(WebhookDeliveries):
    """All job state, behind methods named after what the pipeline needs.

    Webhook deliveries and generated secrets: `store.webhooks.WebhookDeliveries`.

    Args:
        engine: the database.
        clock: a clock to use instead of the database's (tests and orchestration specs).
    """

    def __init__(self, engine: Engine, clock: Callable[[], float] | None = None) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = StoreClock(engine, clock)

    @classmethod
    def from_url(cls, url: str, clock: Callable[[], float] | None = None) -> JobStore:
        return cls(make_engine(url), clock)

    def dispose(self) -> None:
        """Drop pooled connections (after a fork, or at shutdown)."""
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[tuple[Session, float]]:
        """A transaction and the database's time at its start."""
        with self._sessions() as session, session.begin():
            yield session, self._clock.now_in(session)

    def now(self) -> float:
        """The current time on the store's clock (Unix seconds)."""
        with self._sessions() as session:
            return self._clock.now_in(session)

    def create_schema(self) -> None:
        """Migrate the tables to head and add the account row; safe from many workers at once.

        This is `tryon db upgrade`; tests call it too, so that every test runs on the
        migrated schema rather than on one `create_all` would make.
        """
        upgrade_schema(self.engine)
        self.ensure_account_row()

    def ensure_account_row(self) -> None:
        """Add the single account row if it is missing (idempotent, race-safe)."""
        try:
            with self._tx() as (s, _):
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
        content_hash: str | None = None,
        priority: int = 0,
        model_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
    ) -> Admitted:
        """Record a valid job as `queued` with its create body.

        A job id already taken by the same content is a duplicate (nothing happens); by
        other content, a conflict (counted and noted, the message is not taken), unless
        the job was `rejected`: a rejected job never reached the API, so a corrected
        message under its id starts it over as `queued` (a resubmission).
        """
        job = NewJob(
            job_id,
            body=body,
            content_hash=content_hash,
            priority=priority,
            model_name=model_name,
            metadata=metadata,
            callback_url=callback_url,
            webhook_events=webhook_events,
        )
        return self._accept(job)

    def accept_many(self, jobs: Sequence[NewJob]) -> list[Admitted]:
        """`accept` for several jobs, in their order: the new ones in one transaction.

        An id already taken (or twice in `jobs`) then goes through `accept` on its own,
        as does every job if another worker took one of these ids meanwhile.
        """
        first: dict[str, int] = {}
        for i, job in enumerate(jobs):
            first.setdefault(job.job_id, i)
        admitted: dict[int, Admitted] = {}
        try:
            with self._tx() as (s, now):
                taken = set(s.scalars(select(JobRow.job_id).where(JobRow.job_id.in_(first))))
                fresh = {
                    i: _queued_values(job, now)
                    for i, job in enumerate(jobs)
                    if job.job_id not in taken and first[job.job_id] == i
                }
                if fresh:
                    # Core inserts (executemany): no ORM objects to build for rows that
                    # are written once and read back as records from the same values.
                    s.execute(insert(_JOBS), [_column_keys(row) for row, _ in fresh.values()])
                    s.execute(insert(_PAYLOADS), [payload for _, payload in fresh.values()])
                for i, (row, _) in fresh.items():
                    # No `images` column value: SQL NULL (a None there would be JSON null).
                    record = record_from_row(cast(JobRow, SimpleNamespace(images=None, **row)))
                    admitted[i] = Admitted(record, Admission.CREATED)
        except IntegrityError:
            admitted = {}  # raced by another worker: each job on its own
        return [admitted.get(i) or self._accept(job) for i, job in enumerate(jobs)]

    def _queued_rows(self, job: NewJob, now: float) -> tuple[JobRow, PayloadRow]:
        row, payload = _queued_values(job, now)
        return JobRow(**row), PayloadRow(**payload)

    def _accept(self, job: NewJob) -> Admitted:
        job_id, callback_url, webhook_events = job.job_id, job.callback_url, job.webhook_events
        priority, model_name, metadata = job.priority, job.model_name, job.metadata
        payload = json.dumps(dict(job.body))

        def fresh(now: float) -> tuple[JobRow, PayloadRow | None]:
            return self._queued_rows(job, now)

        def restart(row: JobRow, s: Session, now: float) -> None:
            _set_webhook_target(row, callback_url, webhook_events)
            row.state = JobState.QUEUED
            row.error_code = None
            row.error_message = None
            row.finished_at = None
            row.priority = priority
            row.model_name = model_name
            row.job_metadata = dict(metadata or {})
            s.merge(PayloadRow(job_id=job_id, body=payload))

        return self._admit(job_id, job.content_hash, fresh, restart)

    def reject(
        self,
        job_id: str,
        *,
        code: str,
        message: str,
        content_hash: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
    ) -> Admitted:
        """Record a job that never reaches the API (same id rules as `accept`).

        The webhook target is kept too: the producer hears of the rejection.
        """

        def fresh(now: float) -> tuple[JobRow, PayloadRow | None]:
            row = self._new_row(job_id, JobState.REJECTED, metadata, now, content_hash)
            _set_webhook_target(row, callback_url, webhook_events)
            row.error_code = code
            row.error_message = message
            row.finished_at = now
            return row, None

        def restart(row: JobRow, _s: Session, now: float) -> None:
            # Rejected again, for a new reason: the record says the latest one.
            _set_webhook_target(row, callback_url, webhook_events)
            row.error_code = code
            row.error_message = message
            row.finished_at = now

        return self._admit(job_id, content_hash, fresh, restart)

    def _admit(
        self,
        job_id: str,
        content_hash: str | None,
        fresh: Callable[[float], tuple[JobRow, PayloadRow | None]],
        restart: Callable[[JobRow, Session, float], None],
    ) -> Admitted:
        try:
            with self._tx() as (s, now):
                row, payload = fresh(now)
                s.add(row)
                s.flush()  # the payload's foreign key needs the job row first
                if payload is not None:
                    s.add(payload)
                created = record_from_row(row)
        except IntegrityError:
            pass  # the id is taken: decide below
        else:
            return Admitted(created, Admission.CREATED)
        with self._tx() as (s, now):
            existing = s.scalar(select(JobRow).where(JobRow.job_id == job_id).with_for_update())
            if existing is None:  # pragma: no cover - only after a concurrent delete
                raise LookupError(f"job {job_id!r} vanished while being admitted")
            same = content_hash is None or existing.content_hash in (None, content_hash)
            if same:
                outcome = Admission.DUPLICATE
            elif existing.state == JobState.REJECTED:
                outcome = Admission.RESUBMITTED
                restart(existing, s, now)
                existing.content_hash = content_hash
                existing.resubmissions += 1
                existing.note = "sent again with other content after it was rejected"
                existing.updated_at = now
            else:
                outcome = Admission.CONFLICT
                existing.conflicts += 1
                existing.note = (
                    f"a message with other content came under this job id while it was "
                    f"{existing.state}; it was not taken (use a new job id)"
                )
                existing.updated_at = now
        return Admitted(self._require(job_id), outcome)

    @staticmethod
    def _new_row(
        job_id: str,
        state: JobState,
        metadata: Mapping[str, Any] | None,
        now: float,
        content_hash: str | None,
    ) -> JobRow:
        return JobRow(
            job_id=job_id,
            state=state,
            job_metadata=dict(metadata or {}),
            content_hash=content_hash,
            created_at=now,
            updated_at=now,
        )

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

    def page_jobs(
        self,
        state: JobState | None = None,
        *,
        limit: int = 100,
        after: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[JobRecord]:
        """Jobs newest first, a page at a time, optionally of one state and metadata.

        Args:
            state: Only jobs in this state.
            limit: The page's size.
            after: The job id the previous page ended with: this page starts after it
                (a keyset cursor on the intake order, stable while new jobs arrive).
            metadata: Only jobs whose metadata holds each of these keys with this value
                (compared as text).
        """
        query = select(JobRow).order_by(JobRow.seq.desc()).limit(limit)
        if state is not None:
            query = query.where(JobRow.state == state)
        if after is not None:
            cursor = select(JobRow.seq).where(JobRow.job_id == after).scalar_subquery()
            query = query.where(JobRow.seq < cursor)
        for key, value in (metadata or {}).items():
            query = query.where(JobRow.job_metadata[key].as_string() == value)
        with self._sessions() as s:
            return [record_from_row(row) for row in s.scalars(query)]

    def count_by_state(self) -> dict[str, int]:
        with self._sessions() as s:
            rows = s.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all()
        return {str(state): int(n) for state, n in rows}

    def in_flight(self) -> int:
        """Account slots held: jobs being submitted or run, and lingering tasks."""
        with self._sessions() as s:
            return _count_in_flight(s)

    # ---------------------------------------------------------------- slots -----------
    def claim_next(
        self,
        max_in_flight: int,
        *,
        lease_seconds: float,
        new_owner: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> list[Claim]:
        """Give free account slots to the oldest queued jobs (highest priority first)."""
        with self._tx() as (s, now):
            account = self._lock_account(s)
            free = max_in_flight - _count_in_flight(s)
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
            if not job_ids:
                return []
            owners = {job_id: new_owner() for job_id in job_ids}
            jobs = _JOBS
            # One statement run for every job (executemany), each still conditional on
            # the job being queued; then one read says which moved and gives the records.
            s.execute(
                update(jobs)
                .where(jobs.c.job_id == bindparam("b_job"), jobs.c.state == JobState.QUEUED)
                .values(
                    state=JobState.SUBMITTING,
                    lease_owner=bindparam("b_owner"),
                    lease_until=now + lease_seconds,
                    updated_at=now,
                ),
                [{"b_job": job_id, "b_owner": owner} for job_id, owner in owners.items()],
            )
            rows = _rows_of(s, job_ids)
            moved = {
                row.job_id: record_from_row(row)
                for row in rows
                if row.state == JobState.SUBMITTING and row.lease_owner == owners[row.job_id]
            }
            return [Claim(j, owners[j], moved[j]) for j in job_ids if j in moved]

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
        with self._tx() as (s, now):
            return list(
                s.scalars(
                    select(JobRow.job_id).where(*_expired(now)).order_by(JobRow.seq).limit(limit)
                )
            )

    def take_over(self, job_id: str, new_owner: str, *, lease_seconds: float) -> bool:
        """Move an expired claim to a new owner (the old owner's messages then do nothing).

        Never while an attempt window is open: the old owner may be sending its create.
        """
        with self._tx() as (s, now):
            moved = s.execute(
                update(JobRow)
                .where(JobRow.job_id == job_id, *_expired(now))
                .values(lease_owner=new_owner, lease_until=now + lease_seconds, updated_at=now)
            )
            return _matched(moved)

    def take_over_all(
        self,
        new_owner: Callable[[], str],
        *,
        lease_seconds: float,
        released: str | None = None,
        limit: int = 100,
    ) -> list[Claim]:
        """Give a new owner to every claim that ran out, and to every claim of the holder
        `released` (a worker that stopped, or lost its broker connection and with it,
        maybe, the messages of its claims), in one transaction.

        Never while an attempt window is open: the old owner may be sending its create.
        The old owner's messages then find another owner and do nothing.
        """
        with self._tx() as (s, now):
            lapsed = [JobRow.lease_until < now]
            if released is not None:
                lapsed.append(JobRow.lease_owner.startswith(f"{released}.", autoescape=True))
            where = (
                JobRow.state == JobState.SUBMITTING,
                or_(*lapsed),
                or_(JobRow.attempt_until.is_(None), JobRow.attempt_until < now),
            )
            job_ids = list(
                s.scalars(select(JobRow.job_id).where(*where).order_by(JobRow.seq).limit(limit))
            )
            claims = []
            for job_id in job_ids:
                owner = new_owner()
                moved = s.execute(
                    update(JobRow)
                    .where(JobRow.job_id == job_id, *where)
                    .values(lease_owner=owner, lease_until=now + lease_seconds, updated_at=now)
                )
                if _matched(moved):
                    claims.append(Claim(job_id, owner))
            return claims

    def renew_claims(self, holder: str, *, seconds: float, fresh_for: float) -> int:
        """The heartbeat of `holder`: its claims' leases run `seconds` from now (never
        shortened); returns how many were renewed.

        Only claims written to within `fresh_for` seconds (claimed, taken over, sent): a
        claim whose message was lost while its holder lives (a publish that failed, a
        parked batch) must still run out, after that long lease, as it did before. And
        never a claim with an attempt window: an open one covers its run already, and one
        that closed without its run leaving was a run that died (a pool process killed,
        or cancelled by Celery when the broker connection dropped): it runs out with
        its window, and the next owner looks its job up.
        """
        with self._tx() as (s, now):
            until = now + seconds
            moved = s.execute(
                update(JobRow)
                .where(
                    JobRow.state == JobState.SUBMITTING,
                    JobRow.lease_owner.startswith(f"{holder}.", autoescape=True),
                    JobRow.updated_at > now - fresh_for,
                    JobRow.attempt_until.is_(None),
                    JobRow.lease_until < until,
                )
                .values(lease_until=until)
            )
            return int(cast(Any, moved).rowcount)

    def extend_claim(self, job_id: str, owner: str, seconds: float) -> bool:
        """Keep a claim `seconds` longer while its owner waits (the wait may outlast it)."""
        with self._tx() as (s, now):
            moved = s.execute(
                update(JobRow).where(*_claimed_by(job_id, owner)).values(lease_until=now + seconds)
            )
            return _matched(moved)

    # ---------------------------------------------------------------- submitting ------
    def enter_submit(
        self, job_id: str, owner: str, *, window: float, grace: float
    ) -> CreatePlan | Busy | None:
        """Start one submit run for the claim's owner.

        Args:
            window: the longest one attempt (lookups and one create) may take.
            grace: how long after a create may have been made a "not found" is not
                trusted (the API may not show a new task at once).

        Returns:
            The plan to act on; `Busy` when another run of the same owner is
            mid-attempt (a redelivered message while the first run may still be
            sending); None when `owner` does not hold the claim (a duplicate message, or
            the job has moved on): then there is nothing to do.
        """
        (entry,) = self.enter_submits([(job_id, owner)], window=window, grace=grace)
        return entry

    def enter_submits(
        self, claims: Sequence[tuple[str, str]], *, window: float, grace: float
    ) -> list[CreatePlan | Busy | None]:
        """`enter_submit` for several (job id, owner) claims, in one transaction.

        A fixed number of statements whatever the batch's size: one read of the rows,
        one conditional UPDATE that opens the windows, one read of the bodies and one of
        the pause (only an entry after a worker died writes its own row).
        """
        with self._tx() as (s, now):
            return _enter_all(s, now, claims, window=window, grace=grace)

    def leave_submit(self, job_id: str, owner: str) -> None:
        """End the run started by `enter_submit` (whatever its outcome)."""
        with self._tx() as (s, _):
            s.execute(
                update(JobRow)
                .where(JobRow.job_id == job_id, JobRow.lease_owner == owner)
                .values(attempt_until=None)
            )

    def record_intent(self, job_id: str, owner: str, *, window: float) -> bool:
        """Written *before* the paid POST: from now on the job may have a Kling task.

        Returns False, and the caller must not send anything, when `owner` no longer
        holds a live claim. The write also (re)opens the attempt window, so nobody can
        take the claim over while the POST may be on its way.
        """
        with self._tx() as (s, now):
            return _intent(s, now, job_id, owner, window=window)

    def record_intents(self, claims: Sequence[tuple[str, str]], *, window: float) -> set[str]:
        """`record_intent` for several (job id, owner) claims in one transaction.

        Returns the job ids whose intent was written: only those may be sent.
        """
        if not claims:
            return set()
        jobs = _JOBS
        until: BindParameter[float] = bindparam("b_until")
        # One statement run for every claim (executemany); the fence is the same as
        # `_intent`'s, row by row.
        statement = _claimed_rows().values(
            create_pending=True,
            attempts=jobs.c.attempts + 1,
            attempt_until=until,
            lease_until=case((jobs.c.lease_until > until, jobs.c.lease_until), else_=until),
        )
        with self._tx() as (s, now):
            s.execute(
                statement.where(jobs.c.lease_until > now).values(intent_at=now, updated_at=now),
                [
                    {"b_job": job_id, "b_owner": owner, "b_until": now + window}
                    for job_id, owner in claims
                ],
            )
            # Which rows took it: those of the owner that carry this transaction's time.
            owners = dict(claims)
            written = s.execute(
                select(JobRow.job_id, JobRow.lease_owner, JobRow.intent_at).where(
                    JobRow.job_id.in_(owners)
                )
            )
            return {
                job_id
                for job_id, owner, intent_at in written
                if owner == owners[job_id] and intent_at == now
            }

    def note_failed_create(
        self, job_id: str, owner: str, *, ambiguous: bool, spend_retry: bool, grace: float
    ) -> int:
        """Record a create attempt (or a refusal) that got no task id.

        Args:
            ambiguous: the answer does not prove that nothing was made: a task may exist,
                and a "not found" proves nothing for `grace` seconds. A clean answer
                (1303, 1302, a refused connection) proves only that *this* POST made
                nothing, so it leaves an earlier ambiguity in place.
            spend_retry: the failure counts against the job's retry budget.

        Returns:
            The retries spent so far.
        """
        with self._tx() as (s, now):
            row = s.scalar(
                select(JobRow).where(JobRow.job_id == job_id, JobRow.lease_owner == owner)
            )
            if row is None:
                return 0
            row.create_pending = False
            if ambiguous:
                row.unresolved_until = max(row.unresolved_until or 0.0, now + grace)
            if spend_retry:
                row.retries += 1
            return row.retries

    def resolve_not_found(self, job_id: str, owner: str) -> bool:
        """A lookup after the grace said "not found": no task exists, a create may go."""
        with self._tx() as (s, now):
            moved = s.execute(
                update(JobRow)
                .where(
                    *_claimed_by(job_id, owner),
                    or_(JobRow.unresolved_until.is_(None), JobRow.unresolved_until <= now),
                )
                .values(unresolved_until=None)
            )
            return _matched(moved)

    def mark_submitted(
        self, job_id: str, owner: str, *, task_id: str, processing: bool = False
    ) -> JobRecord | None:
        """Kling accepted the job: keep its task id, forget the photos."""
        with self._tx() as (s, now):
            (record,) = _submitted(s, now, [Created(job_id, owner, task_id, processing)])
            return record

    def mark_submitted_many(self, created: Sequence[Created]) -> list[JobRecord | None]:
        """`mark_submitted` for several creates in one transaction, in their order."""
        if len(created) < 2:
            with self._tx() as (s, now):
                return _submitted(s, now, created)
        statement = _claimed_rows().values(
            state=bindparam("b_state"),
            kling_task_id=bindparam("b_task"),
            create_pending=False,
            unresolved_until=None,
            attempt_until=None,
            lease_owner=None,
            lease_until=None,
        )
        with self._tx() as (s, now):
            # One statement run for every create (executemany), fenced like `_submitted`.
            s.execute(
                statement.values(submitted_at=now, updated_at=now),
                [
                    {
                        "b_job": one.job_id,
                        "b_owner": one.owner,
                        "b_task": one.task_id,
                        "b_state": JobState.PROCESSING if one.processing else JobState.SUBMITTED,
                    }
                    for one in created
                ],
            )
            rows = {row.job_id: row for row in _rows_of(s, [one.job_id for one in created])}
            # Moved by this transaction: the task id and this transaction's time.
            records = [
                record_from_row(row)
                if (row := rows.get(one.job_id)) is not None
                and row.kling_task_id == one.task_id
                and row.submitted_at == now
                else None
                for one in created
            ]
            moved = [r.job_id for r in records if r is not None]
            if moved:
                s.execute(delete(PayloadRow).where(PayloadRow.job_id.in_(moved)))
            return records

    # ---------------------------------------------------------------- tracking --------
    def mark_processing(self, job_id: str) -> JobRecord | None:
        return self._move(job_id, JobState.PROCESSING)

    def enter_poll(self, job_id: str, poll: int) -> bool:
        """Take poll number `poll` of a tracked job; False if another message took it.

        The poll count is the fence of the tracking chain: each track message carries the
        number it expects, so a duplicated or redelivered message cannot fork the chain.
        """
        with self._tx() as (s, now):
            moved = s.execute(
                update(JobRow)
                .where(JobRow.job_id == job_id, JobRow.polls == poll, _polled())
                .values(polls=poll + 1, polled_at=now)
            )
            return _matched(moved)

    def mark_overdue(self, job_id: str) -> JobRecord | None:
        """Flag a tracked job overdue (its task outlived our deadline), once.

        A flag, not a state: the job stays `submitted` or `processing`, keeps its slot
        (Kling counts the task until it ends) and is still followed. Returns the record
        when this call set the flag; None when it was set already or the job ended.
        """
        with self._tx() as (s, now):
            moved = s.execute(
                update(JobRow)
                .where(
                    JobRow.job_id == job_id,
                    JobRow.state.in_(TRACKED_STATES),
                    JobRow.overdue_at.is_(None),
                )
                .values(overdue_at=now, updated_at=now)
            )
            if not _matched(moved):
                return None
            row = s.scalar(select(JobRow).where(JobRow.job_id == job_id))
            return record_from_row(row) if row is not None else None

    def stale_tracked(
        self, *, older_than: float, overdue_older_than: float | None = None, limit: int = 100
    ) -> list[tuple[str, int]]:
        """Tracked jobs nobody has polled for a while, with the poll number to send next.

        Overdue jobs are polled at a slower pace: theirs is `overdue_older_than` (by
        default the same), so that a live slow chain is not doubled by the sweep.
        """
        slow = older_than if overdue_older_than is None else overdue_older_than
        with self._tx() as (s, now):
            last = func.coalesce(JobRow.polled_at, JobRow.submitted_at)
            rows = s.execute(
                select(JobRow.job_id, JobRow.polls)
                .where(
                    _polled(),
                    or_(
                        and_(JobRow.overdue_at.is_(None), last < now - older_than),
                        and_(JobRow.overdue_at.is_not(None), last < now - slow),
                    ),
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
        lingering: bool = False,
    ) -> JobRecord | None:
        """Move a job to a terminal state; returns None if it was already there.

        Args:
            lingering: the job ends for us but its Kling task may still run: it keeps
                its account slot until `release_lingering`.
        """
        values: dict[str, Any] = {
            "error_code": error_code,
            "error_message": error_message,
            "lease_owner": None,
            "lease_until": None,
            "create_pending": False,
            "unresolved_until": None,
            "attempt_until": None,
            "lingering": lingering,
        }
        if images is not None:
            values["images"] = [img.model_dump() for img in images]
        if final_unit_deduction is not None:
            values["final_unit_deduction"] = final_unit_deduction
        return self._move(job_id, state, owner=owner, drop_payload=True, finished=True, **values)

    def release_lingering(self, job_id: str) -> bool:
        """The lingering task of a job failed by our deadline has ended: free its slot."""
        with self._tx() as (s, now):
            moved = s.execute(
                update(JobRow)
                .where(JobRow.job_id == job_id, JobRow.lingering.is_(True))
                .values(lingering=False, updated_at=now)
            )
            return _matched(moved)

    def _move(
        self,
        job_id: str,
        target: JobState,
        *,
        owner: str | None = None,
        drop_payload: bool = False,
        finished: bool = False,
        **values: Any,
    ) -> JobRecord | None:
        """The single place where a state changes: only forward, only from allowed states."""
        with self._tx() as (s, now):
            query = update(JobRow).where(
                JobRow.job_id == job_id, JobRow.state.in_(allowed_sources(target))
            )
            if owner is not None:
                query = query.where(JobRow.lease_owner == owner)
            if finished:
                values["finished_at"] = now
            moved = s.execute(query.values(state=target, updated_at=now, **values))
            if not _matched(moved):
                return None
            if drop_payload:
                s.execute(delete(PayloadRow).where(PayloadRow.job_id == job_id))
            return _record_in(s, job_id)

    # ---------------------------------------------------------------- account pause ---
    def current_pause(self) -> AccountPause | None:
        with self._tx() as (s, now):
            return _pause_in(s, now)

    def pause(self, code: str, message: str, *, retry_in: float) -> bool:
        """Stop every submission; one probe may try again in `retry_in` seconds.

        Returns:
            True when this call started the pause, False when the account was paused
            already (another job's refusal, or a failed probe): the start is what an
            operator is told of, once (the account row is locked, so one caller wins).
        """
        with self._tx() as (s, now):
            account = self._lock_account(s)
            started = account.pause_code is None
            account.pause_code = code
            account.pause_message = message
            account.paused_until = now + retry_in
            return started

    def take_probe(self, *, next_in: float) -> bool:
        """Become the one submission allowed through a due pause. False: wait."""
        with self._tx() as (s, now):
            moved = s.execute(
                update(AccountRow)
                .where(
                    AccountRow.id == ACCOUNT_ROW_ID,
                    AccountRow.pause_code.is_not(None),
                    AccountRow.paused_until <= now,
                )
                .values(paused_until=now + next_in)
            )
            return _matched(moved)

    def clear_pause(self) -> bool:
        with self._tx() as (s, _):
            moved = s.execute(
                update(AccountRow)
                .where(AccountRow.id == ACCOUNT_ROW_ID, AccountRow.pause_code.is_not(None))
                .values(pause_code=None, pause_message=None, paused_until=None)
            )
            return _matched(moved)

    # ---------------------------------------------------------------- secrets ---------
    def secret(self, name: str, generate: Callable[[], str]) -> str:
        """The secret `name`, generated by `generate` the first time anyone asks.

        Race-free across workers: the first insert wins and everybody reads it back.
        """
        with self._sessions() as s:
            row = s.get(SecretRow, name)
            if row is not None:
                return row.value
        try:
            with self._tx() as (s, now):
                s.add(SecretRow(name=name, value=generate(), created_at=now))
        except IntegrityError:
            pass  # another process stored one first: use theirs
        with self._sessions() as s:
            row = s.get(SecretRow, name)
            if row is None:  # pragma: no cover - only after a concurrent delete
                raise LookupError(f"secret {name!r} vanished")
            return row.value

    # ---------------------------------------------------------------- housekeeping ----
    def take_results_cleanup(self, *, every: float) -> bool:
        """True for one caller per `every` seconds: it deletes expired task results."""
        return self._take_turn(AccountRow.results_cleaned_at, every)

    def take_sweep(self, *, every: float) -> bool:
        """True for one caller per `every` seconds: it runs the sweep's rescues.

        Every worker sends sweeps on a timer; after an outage or a backlog many may
        arrive at once. One of them does the work, the others only dispatch.
        """
        return self._take_turn(AccountRow.last_sweep_at, every)

    def _take_turn(self, column: Any, every: float) -> bool:
        with self._tx() as (s, now):
            moved = s.execute(
                update(AccountRow)
                .where(
                    AccountRow.id == ACCOUNT_ROW_ID,
                    or_(column.is_(None), column <= now - every),
                )
                .values({column: now})
            )
            return _matched(moved)

    # ---------------------------------------------------------------- result copies ---
    def expect_copies(self, job_id: str) -> None:
        """Note that the job's result images are to be copied (idempotent).

        Written before the job is recorded succeeded, so that a worker dying between the
        two leaves the copy due, and the sweep sends it.
        """
        with self._tx() as (s, now):
            if s.get(ResultCopyRow, job_id) is None:
                s.add(ResultCopyRow(job_id=job_id, tries=0, due_at=now))

    def take_copy(self, job_id: str) -> int | None:
        """Start one copy run: the failed tries so far, or None if no copy is due.

        Marks the copy as running now, so that the sweep does not send it again for
        `lost_after` seconds; a copy given up for good (`due_at` NULL) is not taken.
        """
        with self._tx() as (s, now):
            row = s.get(ResultCopyRow, job_id, with_for_update=True)
            if row is None or row.due_at is None:
                return None
            row.due_at = now
            return row.tries

    def record_copies(self, job_id: str, copies: list[ResultImage]) -> list[str] | None:
        """Fill in `stored` and `sha256` of a succeeded job's images from `copies`.

        Only an image with the same index and URL whose copy is still missing is
        filled in, so that a late copy never overwrites a newer record (a forgotten job
        has no images left). When no copy is missing any more, the copy is done.

        Returns:
            Every location the record names now (the caller deletes an upload that is
            not among them: nobody would ever find it), or None when the job is gone or
            not succeeded.
        """
        found = {(c.index, c.url): c for c in copies if c.stored is not None}
        with self._tx() as (s, now):
            row = s.scalar(
                select(JobRow)
                .where(JobRow.job_id == job_id, JobRow.state == JobState.SUCCEEDED)
                .with_for_update()
            )
            if row is None:
                return None
            images = [ResultImage.model_validate(img) for img in row.images or []]
            merged = []
            for image in images:
                copy = found.get((image.index, image.url))
                if image.stored is None and copy is not None:
                    image = image.model_copy(update={"stored": copy.stored, "sha256": copy.sha256})
                merged.append(image)
            if merged != images:
                row.images = [img.model_dump() for img in merged]
                row.updated_at = now
            if all(img.stored is not None for img in merged):
                s.execute(delete(ResultCopyRow).where(ResultCopyRow.job_id == job_id))
            return [img.stored for img in merged if img.stored is not None]

    def copy_failed(self, job_id: str, *, retry_in: float, error: str) -> int:
        """A copy run failed for now: due again in `retry_in` s; returns the tries spent."""
        with self._tx() as (s, now):
            row = s.get(ResultCopyRow, job_id, with_for_update=True)
            if row is None:
                return 0
            row.tries += 1
            row.due_at = now + retry_in
            row.last_error = error
            return row.tries

    def give_up_copy(self, job_id: str, *, error: str) -> None:
        """The copy can never succeed (not an image, too large, a URL answering 4xx)."""
        with self._tx() as (s, _):
            s.execute(
                update(ResultCopyRow)
                .where(ResultCopyRow.job_id == job_id)
                .values(due_at=None, last_error=error)
            )

    def drop_copy(self, job_id: str) -> None:
        """Nothing (more) to copy for this job."""
        with self._tx() as (s, _):
            s.execute(delete(ResultCopyRow).where(ResultCopyRow.job_id == job_id))

    def copy_status(self, job_id: str) -> tuple[int, float | None, str | None] | None:
        """(tries, due_at, last_error) of a pending copy, or None when none is pending."""
        with self._sessions() as s:
            row = s.get(ResultCopyRow, job_id)
            return (row.tries, row.due_at, row.last_error) if row is not None else None

    def lost_copies(self, *, lost_after: float, limit: int = 100) -> list[str]:
        """Copies due more than `lost_after` seconds ago: their message was lost.

        Each one returned is marked as running now, so that the next sweeps do not send
        it again before `lost_after` has passed once more.
        """
        with self._tx() as (s, now):
            job_ids = list(
                s.scalars(
                    select(ResultCopyRow.job_id)
                    .where(ResultCopyRow.due_at < now - lost_after)
                    .order_by(ResultCopyRow.due_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if job_ids:
                s.execute(
                    update(ResultCopyRow)
                    .where(ResultCopyRow.job_id.in_(job_ids))
                    .values(due_at=now)
                )
        return job_ids

    # ---------------------------------------------------------------- retention -------
    def purgeable(
        self, *, older_than: float, after_seq: int = 0, limit: int = 200
    ) -> list[tuple[int, JobRecord]]:
        """Terminal jobs that ended more than `older_than` seconds ago, by `seq`.

        A lingering job (failed by our deadline, its Kling task maybe still running)
        still holds an account slot and is not purgeable until it lets go.
        """
        with self._tx() as (s, now):
            rows = s.scalars(
                select(JobRow)
                .where(*_purgeable(now - older_than), JobRow.seq > after_seq)
                .order_by(JobRow.seq)
                .limit(limit)
            ).all()
            return [(row.seq, record_from_row(row)) for row in rows]

    def delete_ended(self, job_id: str, *, older_than: float) -> bool:
        """Delete one purgeable job's rows (conditional: it must still be purgeable)."""
        with self._tx() as (s, now):
            s.execute(delete(PayloadRow).where(PayloadRow.job_id == job_id))
            s.execute(delete(ResultCopyRow).where(ResultCopyRow.job_id == job_id))
            gone = s.execute(
                delete(JobRow).where(JobRow.job_id == job_id, *_purgeable(now - older_than))
            )
            return _matched(gone)

    def forget(self, job_id: str, *, note: str) -> Forgotten | None:
        """Clear everything personal from a job's record; None if the job is unknown.

        Kept: the ids (job, Kling task), the states and times, the error code and the
        counters. Cleared: the image URLs and copies, the metadata, the error message,
        the note, the content hash (a hash of the photos), the create body. A queued job
        (never sent) ends `failed` with code `forgotten`; a job in flight at Kling is
        left as it is (`in_flight`): its result is still to come, forget it after.
        """
        with self._tx() as (s, now):
            row = s.scalar(select(JobRow).where(JobRow.job_id == job_id).with_for_update())
            if row is None:
                return None
            if row.state in IN_FLIGHT_STATES or row.lingering:
                return Forgotten(record_from_row(row), locations=(), in_flight=True)
            locations = tuple(
                str(img["stored"]) for img in row.images or [] if img.get("stored") is not None
            )
            if row.state == JobState.QUEUED:
                row.state = JobState.FAILED
                row.error_code = "forgotten"
                row.finished_at = now
            payloads: Any = s.execute(delete(PayloadRow).where(PayloadRow.job_id == job_id))
            s.execute(delete(ResultCopyRow).where(ResultCopyRow.job_id == job_id))
            # The console's 256 px copies of the input photos go with the photos.
            thumbnails: Any = s.execute(delete(ThumbnailRow).where(ThumbnailRow.job_id == job_id))
            payload_deleted = bool(int(payloads.rowcount))
            changed = (
                payload_deleted
                or bool(int(thumbnails.rowcount))
                or row.note != note
                or bool(row.images or row.job_metadata)
            )
            if changed:
                row.images = []
                row.job_metadata = {}
                row.content_hash = None
                row.note = note
                if row.error_code:
                    row.error_message = note
                row.updated_at = now
            return Forgotten(
                record_from_row(row),
                locations=locations,
                in_flight=False,
                payload_deleted=payload_deleted,
                changed=changed,
            )


def _set_webhook_target(
    row: JobRow, callback_url: str | None, webhook_events: Sequence[str] | None
) -> None:
    """Keep the producer's webhook target on the job row (never in its record: the URL
    may carry the producer's own token)."""
    row.callback_url = callback_url
    row.webhook_events = events_column(webhook_events)


# What a submit run's entry reads of a job row (Core rows: no ORM objects to build).
_ENTRY_COLUMNS = tuple(
    _JOBS.c[name]
    for name in (
        "job_id",
        "state",
        "lease_owner",
        "attempt_until",
        "create_pending",
        "intent_at",
        "unresolved_until",
        "attempts",
        "retries",
    )
)


def _rows_of(s: Session, job_ids: Sequence[str]) -> list[JobRow]:
    """The jobs' rows as this transaction sees them, as Core rows that read like `JobRow`
    (for `record_from_row`): no ORM objects to build and nothing left in the session."""
    return cast(
        list[JobRow], s.execute(select(*_ROW_COLUMNS).where(_JOBS.c.job_id.in_(job_ids))).all()
    )


def _queued_values(job: NewJob, now: float) -> tuple[dict[str, Any], dict[str, str]]:
    """A new queued job's row (by attribute name) and its payload row, as values."""
    row: dict[str, Any] = {
        "job_id": job.job_id,
        "state": JobState.QUEUED,
        "priority": job.priority,
        "model_name": job.model_name,
        "kling_task_id": None,
        "error_code": None,
        "error_message": None,
        "attempts": 0,
        "retries": 0,
        "final_unit_deduction": None,
        "job_metadata": dict(job.metadata or {}),
        "content_hash": job.content_hash,
        "conflicts": 0,
        "resubmissions": 0,
        "note": None,
        # Kept on the row, never in its record: the URL may carry the producer's token.
        "callback_url": job.callback_url,
        "webhook_events": events_column(job.webhook_events),
        "created_at": now,
        "updated_at": now,
        "submitted_at": None,
        "finished_at": None,
        "overdue_at": None,
    }
    return row, {"job_id": job.job_id, "body": json.dumps(dict(job.body))}


def _column_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values by attribute name, keyed by column for a Core statement."""
    return {_JOBS_ATTRIBUTE_COLUMNS.get(key, key): value for key, value in values.items()}


def _enter_all(
    s: Session, now: float, claims: Sequence[tuple[str, str]], *, window: float, grace: float
) -> list[CreatePlan | Busy | None]:
    """The claims' entries into a submit run (see `JobStore.enter_submit`), in order."""
    jobs = _JOBS
    ids = [job_id for job_id, _ in claims]
    rows = {r.job_id: r for r in s.execute(select(*_ENTRY_COLUMNS).where(jobs.c.job_id.in_(ids)))}
    entries: list[CreatePlan | Busy | None] = []
    closed: list[int] = []  # claims whose window is closed: this run may open it
    for job_id, owner in claims:
        row = rows.get(job_id)
        if row is None or row.state != JobState.SUBMITTING or row.lease_owner != owner:
            entries.append(None)
        elif row.attempt_until is not None and row.attempt_until > now:
            entries.append(Busy(row.attempt_until - now))
        else:
            closed.append(len(entries))
            entries.append(Busy(window))  # unless the UPDATE below opens it for this run
    if not closed:
        return entries
    # The read above does not lock: two copies of one message (a redelivery while the
    # first still runs) can both get here. Only one opens the attempt window: this
    # conditional UPDATE is decided under each row's write lock on both databases, and
    # RETURNING says which rows it moved.
    until = now + window
    opened = set(
        s.scalars(
            update(jobs)
            .where(
                tuple_(jobs.c.job_id, jobs.c.lease_owner).in_(sorted({claims[i] for i in closed})),
                jobs.c.state == JobState.SUBMITTING,
                or_(jobs.c.attempt_until.is_(None), jobs.c.attempt_until <= now),
            )
            .values(
                attempt_until=until,
                lease_until=case((jobs.c.lease_until > until, jobs.c.lease_until), else_=until),
            )
            .returning(jobs.c.job_id)
        )
    )
    if not opened:
        return entries
    found = s.execute(
        select(_PAYLOADS.c.job_id, _PAYLOADS.c.body).where(_PAYLOADS.c.job_id.in_(opened))
    )
    bodies = {str(job_id): str(body) for job_id, body in found}
    pause = _pause_in(s, now)
    for i in closed:
        job_id = claims[i][0]
        if job_id in opened:
            opened.discard(job_id)  # the same claim twice in a batch opens it once
            row = rows[job_id]
            entries[i] = _plan(s, now, row, bodies, window=window, grace=grace, pause=pause)
    return entries


def _plan(
    s: Session,
    now: float,
    row: Any,
    bodies: Mapping[str, str],
    *,
    window: float,
    grace: float,
    pause: AccountPause | None,
) -> CreatePlan:
    """The plan of a run that opened its job's attempt window (`row`: `_ENTRY_COLUMNS`)."""
    body = bodies.get(row.job_id)
    if body is None:  # pragma: no cover - the payload lives until submission
        raise LookupError(f"job {row.job_id!r} has no create body")
    unresolved = row.unresolved_until
    if row.create_pending:
        # The last attempt's outcome was never written (its worker died): its POST may
        # have reached Kling up to the end of its window.
        sent_by = (row.intent_at or now) + window
        unresolved = max(unresolved or 0.0, sent_by + grace)
        s.execute(
            update(_JOBS)
            .where(_JOBS.c.job_id == row.job_id)
            .values(unresolved_until=unresolved, create_pending=False)
        )
    return CreatePlan(
        job_id=row.job_id,
        body=json.loads(body),
        maybe_created=unresolved is not None,
        trust_not_found_in=max(0.0, unresolved - now) if unresolved else 0.0,
        attempts=row.attempts,
        retries=row.retries,
        pause=pause,
    )


def _intent(s: Session, now: float, job_id: str, owner: str, *, window: float) -> bool:
    """One claim's intent (see `JobStore.record_intent`)."""
    # The lease is only ever lengthened here: it covers the window at least.
    until = now + window
    moved = s.execute(
        update(JobRow)
        .where(*_claimed_by(job_id, owner), JobRow.lease_until > now)
        .values(
            create_pending=True,
            intent_at=now,
            attempts=JobRow.attempts + 1,
            attempt_until=until,
            lease_until=case((JobRow.lease_until > until, JobRow.lease_until), else_=until),
            updated_at=now,
        )
    )
    return _matched(moved)


def _submitted(s: Session, now: float, created: Sequence[Created]) -> list[JobRecord | None]:
    """Accepted creates (see `JobStore.mark_submitted`): each job's record, or None where
    the claim had been taken over; the photos of the moved ones are forgotten."""
    records: list[JobRecord | None] = []
    for one in created:
        target = JobState.PROCESSING if one.processing else JobState.SUBMITTED
        row = s.scalar(
            update(JobRow)
            .where(*_claimed_by(one.job_id, one.owner))
            .values(
                state=target,
                kling_task_id=one.task_id,
                create_pending=False,
                unresolved_until=None,
                attempt_until=None,
                lease_owner=None,
                lease_until=None,
                submitted_at=now,
                updated_at=now,
            )
            .returning(JobRow)
            .execution_options(populate_existing=True)
        )
        records.append(record_from_row(row) if row is not None else None)
    moved = [r.job_id for r in records if r is not None]
    if moved:
        s.execute(delete(PayloadRow).where(PayloadRow.job_id.in_(moved)))
    return records


def _pause_in(s: Session, now: float) -> AccountPause | None:
    row = s.get(AccountRow, ACCOUNT_ROW_ID)
    if row is None or row.pause_code is None:
        return None
    remaining = max(0.0, (row.paused_until or 0.0) - now)
    return AccountPause(row.pause_code, row.pause_message or "", remaining)


def _record_in(s: Session, job_id: str) -> JobRecord | None:
    """The job as this transaction sees it (its own writes included): no second one."""
    row = s.scalar(
        select(JobRow).where(JobRow.job_id == job_id).execution_options(populate_existing=True)
    )
    return record_from_row(row) if row is not None else None


def _matched(result: Any) -> bool:
    """Whether a conditional UPDATE matched its row (the only proof a move happened)."""
    return int(result.rowcount) == 1


def _lingering() -> ColumnElement[bool]:
    """WHERE clause: a job failed by our deadline whose Kling task may still run.

    Only a `failed` job lingers (`finish(..., lingering=True)` is the one writer), and
    saying so lets PostgreSQL answer from the state index: a bare `OR lingering` made
    every claim scan the whole table (bench/backlog.py: 3.4 times slower at 100,000
    queued jobs than at 100, and growing with the table).
    """
    return and_(JobRow.state == JobState.FAILED, JobRow.lingering.is_(True))


def _count_in_flight(s: Session) -> int:
    return int(
        s.scalar(select(func.count()).where(or_(JobRow.state.in_(IN_FLIGHT_STATES), _lingering())))
        or 0
    )


def _expired(now: float) -> tuple[ColumnElement[bool], ...]:
    """WHERE clauses: a claim whose lease ran out and whose attempt window is closed."""
    return (
        JobRow.state == JobState.SUBMITTING,
        JobRow.lease_until < now,
        or_(JobRow.attempt_until.is_(None), JobRow.attempt_until < now),
    )


def _polled() -> ColumnElement[bool]:
    """Jobs whose Kling task is followed: tracked states, and lingering failed ones."""
    return or_(JobRow.state.in_(TRACKED_STATES), _lingering())


def _purgeable(cutoff: float) -> tuple[ColumnElement[bool], ...]:
    """WHERE clauses: a terminal job that ended before `cutoff` and holds no slot."""
    return (
        JobRow.state.in_(TERMINAL_STATES),
        JobRow.finished_at < cutoff,
        JobRow.lingering.is_(False),
    )
