"""Submit runs: the owner of a claim enters, writes its intent, and records the create.

The owner writes its intent to create with a conditional UPDATE that also checks the
lease, and that write opens an attempt window during which nobody may take over: so an
owner that lost its claim can never send the create (at most one create per job).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, case, delete, or_, select, tuple_, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from kolors_tryon.store.account import AccountPause
from kolors_tryon.store.accounts import DEFAULT_ACCOUNT, pause_for
from kolors_tryon.store.database import Database
from kolors_tryon.store.lifecycle import before_deadline
from kolors_tryon.store.queries import (
    JOBS,
    PAYLOADS,
    claimed_by,
    claimed_rows,
    matched,
    rows_of,
)
from kolors_tryon.store.records import JobRecord, record_from_row
from kolors_tryon.store.states import JobState
from kolors_tryon.store.tables import JobRow, PayloadRow


@dataclass(frozen=True)
class CreatePlan:
    """What the owner of a claim needs to send the create call.

    Attributes:
        maybe_created: a create for this job may already have reached Kling: look it up
            before sending anything.
        trust_not_found_in: seconds until a "not found" from that lookup proves that no
            task exists (the API may take a while to show a new task); 0 when it does now.
        attempts: creates sent so far; retries: transient failures spent of the budget.
        pause: the pause of the job's account as the same transaction saw it (None:
            not paused).
    """

    job_id: str
    body: dict[str, Any]
    maybe_created: bool
    trust_not_found_in: float
    attempts: int
    retries: int
    pause: AccountPause | None = None
    # The account the claim went to: every call for this job goes to it alone.
    account: str = DEFAULT_ACCOUNT


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


class Submits:
    """The runs of a claim's owner: entry, intent, failed creates and accepted ones."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def enter(
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
        (entry,) = self.enter_many([(job_id, owner)], window=window, grace=grace)
        return entry

    def enter_many(
        self, claims: Sequence[tuple[str, str]], *, window: float, grace: float
    ) -> list[CreatePlan | Busy | None]:
        """`enter` for several (job id, owner) claims, in one transaction.

        A fixed number of statements whatever the batch's size: one read of the rows,
        one conditional UPDATE that opens the windows, one read of the bodies and one of
        the pause (only an entry after a worker died writes its own row).
        """
        with self._db.transaction() as (s, now):
            return _enter_all(s, now, claims, window=window, grace=grace)

    def leave(self, job_id: str, owner: str) -> None:
        """End the run started by `enter` (whatever its outcome)."""
        with self._db.transaction() as (s, _):
            s.execute(
                update(JobRow)
                .where(JobRow.job_id == job_id, JobRow.lease_owner == owner)
                .values(attempt_until=None)
            )

    def record_intent(self, job_id: str, owner: str, *, window: float) -> bool:
        """Written *before* the paid POST: from now on the job may have a Kling task.

        Returns False, and the caller must not send anything, when `owner` no longer
        holds a live claim, or the job's deadline has passed (no create after it). The
        write also (re)opens the attempt window, so nobody can take the claim over while
        the POST may be on its way.
        """
        with self._db.transaction() as (s, now):
            return _intent(s, now, job_id, owner, window=window)

    def record_intents(self, claims: Sequence[tuple[str, str]], *, window: float) -> set[str]:
        """`record_intent` for several (job id, owner) claims in one transaction.

        Returns the job ids whose intent was written: only those may be sent.
        """
        if not claims:
            return set()
        jobs = JOBS
        until: BindParameter[float] = bindparam("b_until")
        # One statement run for every claim (executemany); the fence is the same as
        # `_intent`'s, row by row.
        statement = claimed_rows().values(
            create_pending=True,
            attempts=jobs.c.attempts + 1,
            attempt_until=until,
            lease_until=case((jobs.c.lease_until > until, jobs.c.lease_until), else_=until),
        )
        with self._db.transaction() as (s, now):
            s.execute(
                statement.where(jobs.c.lease_until > now, before_deadline(now)).values(
                    intent_at=now, updated_at=now
                ),
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
        with self._db.transaction() as (s, now):
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
        with self._db.transaction() as (s, now):
            moved = s.execute(
                update(JobRow)
                .where(
                    *claimed_by(job_id, owner),
                    or_(JobRow.unresolved_until.is_(None), JobRow.unresolved_until <= now),
                )
                .values(unresolved_until=None)
            )
            return matched(moved)

    def mark_submitted(
        self, job_id: str, owner: str, *, task_id: str, processing: bool = False
    ) -> JobRecord | None:
        """Kling accepted the job: keep its task id, forget the photos."""
        with self._db.transaction() as (s, now):
            (record,) = _submitted(s, now, [Created(job_id, owner, task_id, processing)])
            return record

    def mark_submitted_many(self, created: Sequence[Created]) -> list[JobRecord | None]:
        """`mark_submitted` for several creates in one transaction, in their order."""
        if len(created) < 2:
            with self._db.transaction() as (s, now):
                return _submitted(s, now, created)
        statement = claimed_rows().values(
            state=bindparam("b_state"),
            kling_task_id=bindparam("b_task"),
            create_pending=False,
            unresolved_until=None,
            attempt_until=None,
            lease_owner=None,
            lease_until=None,
        )
        with self._db.transaction() as (s, now):
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
            rows = {row.job_id: row for row in rows_of(s, [one.job_id for one in created])}
            # Moved by this transaction: the task id and this transaction's time.
            records = [
                record_from_row(row)
                if (row := rows.get(one.job_id)) is not None
                and row.kling_task_id == one.task_id
                and row.submitted_at == now
                else None
                for one in created
            ]
            moved = [r.key for r in records if r is not None]
            if moved:
                s.execute(delete(PayloadRow).where(PayloadRow.job_id.in_(moved)))
            return records


# What a submit run's entry reads of a job row (Core rows: no ORM objects to build).
_ENTRY_COLUMNS = tuple(
    JOBS.c[name]
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
        "account",
    )
)


def _enter_all(
    s: Session, now: float, claims: Sequence[tuple[str, str]], *, window: float, grace: float
) -> list[CreatePlan | Busy | None]:
    """The claims' entries into a submit run (see `Submits.enter`), in order."""
    jobs = JOBS
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
        select(PAYLOADS.c.job_id, PAYLOADS.c.body).where(PAYLOADS.c.job_id.in_(opened))
    )
    bodies = {str(job_id): str(body) for job_id, body in found}
    pauses: dict[str | None, AccountPause | None] = {}
    for i in closed:
        job_id = claims[i][0]
        if job_id in opened:
            opened.discard(job_id)  # the same claim twice in a batch opens it once
            row = rows[job_id]
            if row.account not in pauses:
                pauses[row.account] = pause_for(s, now, row.account)
            pause = pauses[row.account]
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
            update(JOBS)
            .where(JOBS.c.job_id == row.job_id)
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
        account=row.account or DEFAULT_ACCOUNT,
    )


def _intent(s: Session, now: float, job_id: str, owner: str, *, window: float) -> bool:
    """One claim's intent (see `Submits.record_intent`)."""
    # The lease is only ever lengthened here: it covers the window at least.
    until = now + window
    moved = s.execute(
        update(JobRow)
        .where(*claimed_by(job_id, owner), JobRow.lease_until > now, before_deadline(now))
        .values(
            create_pending=True,
            intent_at=now,
            attempts=JobRow.attempts + 1,
            attempt_until=until,
            lease_until=case((JobRow.lease_until > until, JobRow.lease_until), else_=until),
            updated_at=now,
        )
    )
    return matched(moved)


def _submitted(s: Session, now: float, created: Sequence[Created]) -> list[JobRecord | None]:
    """Accepted creates (see `Submits.mark_submitted`): each job's record, or None where
    the claim had been taken over; the photos of the moved ones are forgotten."""
    records: list[JobRecord | None] = []
    for one in created:
        target = JobState.PROCESSING if one.processing else JobState.SUBMITTED
        row = s.scalar(
            update(JobRow)
            .where(*claimed_by(one.job_id, one.owner))
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
    moved = [r.key for r in records if r is not None]
    if moved:
        s.execute(delete(PayloadRow).where(PayloadRow.job_id.in_(moved)))
    return records
