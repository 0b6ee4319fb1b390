"""The job lifecycle: cancelling jobs (by request or by their deadline) and linking retries.

A job may be cancelled only while no create for it can have reached Kling: it is
`queued`, or it is `submitting` with no create on its way (`create_pending` is written,
under the claim's fence, in the same conditional UPDATE as the intent) and none whose
answer is unknown. The cancel is one conditional UPDATE on that condition, and the
intent is one conditional UPDATE on `state = submitting`: PostgreSQL runs the two one
after the other on the row, so exactly one wins. A cancelled job never gets a create; a
job whose intent was written is never reported cancelled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from kolors_tryon.store.database import Database
from kolors_tryon.store.queries import rows_of
from kolors_tryon.store.records import JobRecord, iso, record_from_row
from kolors_tryon.store.states import IN_FLIGHT_STATES, TERMINAL_STATES, JobState
from kolors_tryon.store.tables import JobRow, PayloadRow

CANCELLED_CODE = "cancelled"
DEADLINE_CODE = "deadline_passed"


class CancelOutcome(StrEnum):
    """What a cancel request did to one job."""

    CANCELLED = "cancelled"  # moved to `cancelled` by this request: no create ever
    AT_KLING = "at_kling"  # a create may have reached Kling: it runs and is charged
    ENDED = "ended"  # already terminal (cancelled before, succeeded, failed, rejected)
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Cancelled:
    """One job's answer to a cancel: the outcome and the record as it now stands."""

    job_id: str
    outcome: CancelOutcome
    record: JobRecord | None


def cancellable() -> ColumnElement[bool]:
    """WHERE clause: no create for the job can have reached Kling, nor be on its way."""
    return or_(
        JobRow.state == JobState.QUEUED,
        and_(
            JobRow.state == JobState.SUBMITTING,
            JobRow.create_pending.is_(False),
            JobRow.unresolved_until.is_(None),
            JobRow.kling_task_id.is_(None),
        ),
    )


def before_deadline(now: float) -> ColumnElement[bool]:
    """WHERE clause: the job has no deadline, or it has not passed (database clock)."""
    return or_(JobRow.deadline_at.is_(None), JobRow.deadline_at > now)


@dataclass(frozen=True)
class RetrySource:
    """What a retry of a job copies: its settings, and its photos while they are kept
    (a cancelled job keeps them; a submitted one lost them at submission, by design)."""

    job_id: str
    state: JobState
    model_name: str | None
    priority: int
    metadata: dict[str, Any]
    callback_url: str | None
    webhook_events: list[str] | None
    body: dict[str, Any] | None
    retries: int


class Lifecycle:
    """Cancels (by request, by deadline) and the links between a job and its retries."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def cancel(self, job_ids: Sequence[str], *, reason: str) -> list[Cancelled]:
        """Cancel every job of `job_ids` that has no create on its way, in one transaction.

        Returns one answer per distinct job id, in their order.
        """
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return []
        with self._db.transaction() as (s, now):
            moved = self._cancel_where(s, now, JobRow.job_id.in_(ids), CANCELLED_CODE, reason)
            rows = {row.job_id: row for row in rows_of(s, ids)}
        answers = []
        for job_id in ids:
            row = rows.get(job_id)
            if row is None:
                answers.append(Cancelled(job_id, CancelOutcome.NOT_FOUND, None))
                continue
            record = record_from_row(row)
            if job_id in moved:
                outcome = CancelOutcome.CANCELLED
            elif record.state in TERMINAL_STATES:
                outcome = CancelOutcome.ENDED
            else:
                assert record.state in IN_FLIGHT_STATES
                outcome = CancelOutcome.AT_KLING
            answers.append(Cancelled(job_id, outcome, record))
        return answers

    def expire_due(self, *, limit: int = 500) -> list[JobRecord]:
        """Cancel the waiting jobs whose deadline has passed; their records."""
        with self._db.transaction() as (s, now):
            due = list(
                s.scalars(
                    select(JobRow.job_id)
                    .where(JobRow.deadline_at < now, cancellable())
                    .order_by(JobRow.deadline_at)
                    .limit(limit)
                )
            )
            return self._expire(s, now, due)

    def expire(self, job_id: str) -> JobRecord | None:
        """Cancel one job whose deadline has passed (its intent was refused for it)."""
        expired = self.expire_among([job_id])
        return expired[0] if expired else None

    def expire_among(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """Cancel those of `job_ids` whose deadline has passed (e.g. jobs recorded after
        it: every worker was down until then); their records."""
        with self._db.transaction() as (s, now):
            return self._expire(s, now, list(job_ids))

    def retry_source(self, job_id: str) -> RetrySource | None:
        """What a retry of `job_id` copies; None when there is no such job."""
        with self._db.session() as s:
            row = s.scalar(select(JobRow).where(JobRow.job_id == job_id))
            if row is None:
                return None
            payload = s.scalar(select(PayloadRow.body).where(PayloadRow.job_id == job_id))
            retries = s.scalar(select(func.count()).where(JobRow.retry_of == job_id)) or 0
            return RetrySource(
                job_id=job_id,
                state=JobState(row.state),
                model_name=row.model_name,
                priority=row.priority,
                metadata=dict(row.job_metadata or {}),
                callback_url=row.callback_url,
                webhook_events=[e for e in (row.webhook_events or "").split(",") if e] or None,
                body=json.loads(payload) if payload is not None else None,
                retries=int(retries),
            )

    def _expire(self, session: Session, now: float, job_ids: list[str]) -> list[JobRecord]:
        if not job_ids:
            return []
        deadlines = dict(
            session.execute(
                select(JobRow.job_id, JobRow.deadline_at).where(JobRow.job_id.in_(job_ids))
            ).all()
        )
        expired: list[JobRecord] = []
        for job_id in job_ids:
            message = f"its deadline {iso(deadlines.get(job_id))} passed before it reached Kling"
            where = and_(JobRow.job_id == job_id, JobRow.deadline_at < now)
            if self._cancel_where(session, now, where, DEADLINE_CODE, message):
                expired.extend(record_from_row(row) for row in rows_of(session, [job_id]))
        return expired

    @staticmethod
    def _cancel_where(
        session: Session, now: float, where: ColumnElement[bool], code: str, message: str
    ) -> set[str]:
        """The fenced move to `cancelled` of the rows `where` names; the ids it moved."""
        moved = session.execute(
            update(JobRow)
            .where(where, cancellable())
            .values(
                state=JobState.CANCELLED,
                error_code=code,
                error_message=message,
                lease_owner=None,
                lease_until=None,
                attempt_until=None,
                finished_at=now,
                updated_at=now,
            )
            .returning(JobRow.job_id)
            .execution_options(synchronize_session=False)
        )
        # The photos stay (until the job is purged or forgotten): a retry of a cancelled
        # job sends the same ones.
        return {str(job_id) for job_id in moved.scalars()}
