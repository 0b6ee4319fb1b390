"""The named WHERE clauses and the few reads that several aggregates share.

Kept apart from the aggregates (as procrastinate keeps its queries apart from its
manager) so that a condition such as "the claim's owner still holds it" or "this job
holds an account slot" is written once, and every fenced UPDATE that relies on it says
so by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from kolors_tryon.store.records import JobRecord, record_from_row
from kolors_tryon.store.states import IN_FLIGHT_STATES, TERMINAL_STATES, TRACKED_STATES, JobState
from kolors_tryon.store.tables import JobRow, PayloadRow, WebhookDeliveryRow

# The tables themselves, for Core statements (executemany, no ORM objects to build).
JOBS = cast(Table, JobRow.__table__)
PAYLOADS = cast(Table, PayloadRow.__table__)
# The attributes of `JobRow` whose column is named otherwise.
JOBS_ATTRIBUTE_COLUMNS = {"job_metadata": "metadata"}
# Every column of the jobs table, labelled with its attribute name.
_COLUMN_ATTRIBUTES = {column: attribute for attribute, column in JOBS_ATTRIBUTE_COLUMNS.items()}
_ROW_COLUMNS = tuple(c.label(_COLUMN_ATTRIBUTES.get(c.key, c.key)) for c in JOBS.c)


# ------------------------------------------------------------------- conditions -------
def claimed_by(job_id: str, owner: str) -> tuple[ColumnElement[bool], ...]:
    """WHERE clauses: the job is being submitted and `owner` holds its claim."""
    return (
        JobRow.job_id == job_id,
        JobRow.state == JobState.SUBMITTING,
        JobRow.lease_owner == owner,
    )


def claimed_rows() -> Update:
    """An UPDATE of the claimed job rows `claimed_by` names, for executemany: the job
    id and owner are the parameters `b_job` and `b_owner` of each row."""
    return update(JOBS).where(
        JOBS.c.job_id == bindparam("b_job"),
        JOBS.c.state == JobState.SUBMITTING,
        JOBS.c.lease_owner == bindparam("b_owner"),
    )


def lingering() -> ColumnElement[bool]:
    """WHERE clause: a job failed by our deadline whose Kling task may still run.

    Only a `failed` job lingers (`finish(..., lingering=True)` is the one writer), and
    saying so lets PostgreSQL answer from the state index: a bare `OR lingering` made
    every claim scan the whole table (bench/backlog.py: 3.4 times slower at 100,000
    queued jobs than at 100, and growing with the table).
    """
    return and_(JobRow.state == JobState.FAILED, JobRow.lingering.is_(True))


def expired(now: float) -> tuple[ColumnElement[bool], ...]:
    """WHERE clauses: a claim whose lease ran out and whose attempt window is closed."""
    return (
        JobRow.state == JobState.SUBMITTING,
        JobRow.lease_until < now,
        or_(JobRow.attempt_until.is_(None), JobRow.attempt_until < now),
    )


def polled() -> ColumnElement[bool]:
    """Jobs whose Kling task is followed: tracked states, and lingering failed ones."""
    return or_(JobRow.state.in_(TRACKED_STATES), lingering())


def purgeable(cutoff: float) -> tuple[ColumnElement[bool], ...]:
    """WHERE clauses: a terminal job that ended before `cutoff` and holds no slot."""
    return (
        JobRow.state.in_(TERMINAL_STATES),
        JobRow.finished_at < cutoff,
        JobRow.lingering.is_(False),
    )


def not_attempted(now: float) -> ColumnElement[bool]:
    """WHERE clause: no live attempt holds the delivery (none, or its fence has passed)."""
    return or_(
        WebhookDeliveryRow.attempting_until.is_(None),
        WebhookDeliveryRow.attempting_until < now,
    )


def matched(result: Any) -> bool:
    """Whether a conditional UPDATE matched its row (the only proof a move happened)."""
    return int(result.rowcount) == 1


# ------------------------------------------------------------------- shared reads -----
def count_in_flight(s: Session) -> int:
    """Account slots held: jobs being submitted or run, and lingering tasks."""
    return int(
        s.scalar(select(func.count()).where(or_(JobRow.state.in_(IN_FLIGHT_STATES), lingering())))
        or 0
    )


def rows_of(s: Session, job_ids: Sequence[str]) -> list[JobRow]:
    """The jobs' rows as this transaction sees them, as Core rows that read like `JobRow`
    (for `record_from_row`): no ORM objects to build and nothing left in the session."""
    return cast(
        list[JobRow], s.execute(select(*_ROW_COLUMNS).where(JOBS.c.job_id.in_(job_ids))).all()
    )


def record_in(s: Session, job_id: str) -> JobRecord | None:
    """The job as this transaction sees it (its own writes included): no second one."""
    row = s.scalar(
        select(JobRow).where(JobRow.job_id == job_id).execution_options(populate_existing=True)
    )
    return record_from_row(row) if row is not None else None


def column_keys(values: dict[str, Any]) -> dict[str, Any]:
    """Values by attribute name, keyed by column for a Core statement."""
    return {JOBS_ATTRIBUTE_COLUMNS.get(key, key): value for key, value in values.items()}
