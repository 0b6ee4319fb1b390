"""What the review console reads from the job store: overview figures, pages of jobs, one
job's record and timeline, its thumbnails.

Why it looks like this:
- Every read is bound to the producers the console user may see (`ProducerScope`), in
  SQL, through one column expression (`producer_of`): the console never loads a job it
  then hides, and issue 19 (jobs owned by producers) changes one line.
- Pages are keyset cursors on (created_at, seq), newest first, never OFFSET: page
  10,000 costs what page 1 costs, with `ix_tryon_jobs_created` (or
  `ix_tryon_jobs_state_created` for one state) walked backwards (migration 0007).
- Whole-table figures are avoided: "now" counts only the live states (few rows, the
  claim index), the last 24 hours come from the `finished_at` index. A store of a
  million ended jobs answers the overview as fast as an empty one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import ColumnElement, Engine, Float, cast, func, literal, select, tuple_
from sqlalchemy.orm import sessionmaker

from kolors_tryon.observe.metrics import parse_units
from kolors_tryon.store.metadata_field import metadata_field
from kolors_tryon.store.records import JobRecord, iso, record_from_row
from kolors_tryon.store.states import TERMINAL_STATES, JobState
from kolors_tryon.store.tables import JobRow, ThumbnailRow

__all__ = [
    "DEFAULT_PRODUCER",
    "LIVE_STATES",
    "ConsoleReads",
    "JobFilter",
    "JobPage",
    "Overview",
    "ProducerScope",
    "Review",
    "TimelineEntry",
    "producer_of",
    "timeline",
]

#: The producer every job belongs to until jobs carry their own (issue 19).
DEFAULT_PRODUCER: Final = "default"
#: States a job is in before its end: counted "now" on the overview.
LIVE_STATES: Final = tuple(s for s in JobState if s not in TERMINAL_STATES)
_HOUR: Final = 3600.0
_DAY: Final = 24 * _HOUR


def producer_of() -> ColumnElement[str]:
    """Which producer owns a job, as a column expression (every console read filters
    through this one expression)."""
    return JobRow.producer.expression


@dataclass(frozen=True)
class ProducerScope:
    """The producers a console user may see: `everything` for an admin."""

    producers: frozenset[str] = frozenset()
    everything: bool = False

    def allows(self) -> ColumnElement[bool]:
        if self.everything:
            return literal(True)
        if not self.producers:
            return literal(False)
        return producer_of().in_(sorted(self.producers))

    def may_see(self, producer: str) -> bool:
        return self.everything or producer in self.producers


@dataclass(frozen=True)
class JobFilter:
    """The jobs table's filters; None (or empty) means "any"."""

    state: JobState | None = None
    metadata_key: str | None = None
    metadata_value: str | None = None
    created_from: float | None = None
    created_to: float | None = None
    error_code: str | None = None
    review_state: str | None = None


@dataclass(frozen=True)
class JobPage:
    """One page of jobs, newest first, and the cursor of the next (None: the last page)."""

    jobs: list[JobRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class Overview:
    """The overview page's figures."""

    now: dict[str, int]
    # Per hour of the last 24 (oldest first): ended jobs by terminal state.
    hourly: list[dict[str, int]]
    ended_24h: dict[str, int]
    backlog: int
    # Jobs ended per hour over the last hour, and the wait that makes for the backlog.
    rate_per_hour: float
    expected_wait_seconds: float | None
    units_today: float
    last_errors: list[JobRecord] = field(default_factory=list)


@dataclass(frozen=True)
class TimelineEntry:
    """One moment of a job's life, from the times its record keeps."""

    at: str
    what: str
    detail: str = ""


def encode_cursor(created_at: float, seq: int) -> str:
    return f"{created_at!r}_{seq}"


def decode_cursor(cursor: str) -> tuple[float, int] | None:
    """The (created_at, seq) a cursor names; None when it is not one of ours."""
    created, _, seq = cursor.partition("_")
    try:
        value, number = float(created), int(seq)
    except ValueError:
        return None
    return (value, number) if math.isfinite(value) else None


class ConsoleReads:
    """The console's queries on the job store's database (its own sessions, read only)."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # ------------------------------------------------------------ overview ------------
    def overview(self, scope: ProducerScope, now: float) -> Overview:
        """Live counts, the last 24 hours by hour, the backlog's expected wait, the last errors."""
        since = now - _DAY
        allowed = scope.allows()
        with self._sessions() as s:
            live = dict(
                s.execute(
                    select(JobRow.state, func.count())
                    .where(JobRow.state.in_([str(x) for x in LIVE_STATES]), allowed)
                    .group_by(JobRow.state)
                ).all()
            )
            bucket = cast(func.floor((JobRow.finished_at - since) / _HOUR), Float)
            ended = s.execute(
                select(bucket, JobRow.state, func.count())
                .where(JobRow.finished_at >= since, allowed)
                .group_by(bucket, JobRow.state)
            ).all()
            # Grouped by the text Kling sent (a handful of values), parsed here: its
            # format is unconfirmed, and one odd value must not break the page.
            deductions = s.execute(
                select(JobRow.final_unit_deduction, func.count())
                .where(JobRow.finished_at >= _midnight(now), allowed)
                .where(JobRow.state == JobState.SUCCEEDED)
                .group_by(JobRow.final_unit_deduction)
            ).all()
            units = sum(parse_units(text) * int(count) for text, count in deductions)
            errors = s.scalars(
                select(JobRow)
                .where(JobRow.finished_at >= since, JobRow.error_code.is_not(None), allowed)
                .order_by(JobRow.finished_at.desc())
                .limit(10)
            ).all()
            last_errors = [record_from_row(row) for row in errors]
        hourly: list[dict[str, int]] = [{} for _ in range(24)]
        ended_24h: dict[str, int] = {}
        last_hour = 0
        for index, state, count in ended:
            slot = min(23, max(0, int(index)))
            hourly[slot][str(state)] = hourly[slot].get(str(state), 0) + int(count)
            ended_24h[str(state)] = ended_24h.get(str(state), 0) + int(count)
            if slot == 23 and state != JobState.REJECTED:
                last_hour += int(count)
        backlog = int(live.get(JobState.QUEUED, 0))
        wait = backlog / last_hour * _HOUR if last_hour else None
        return Overview(
            now={str(state): int(live.get(state, 0)) for state in LIVE_STATES},
            hourly=hourly,
            ended_24h=ended_24h,
            backlog=backlog,
            rate_per_hour=float(last_hour),
            expected_wait_seconds=wait,
            units_today=float(units),
            last_errors=last_errors,
        )

    # ------------------------------------------------------------ jobs ----------------
    def page(
        self, scope: ProducerScope, wanted: JobFilter, *, limit: int, cursor: str | None
    ) -> JobPage:
        """One page of jobs, newest first, after `cursor` (the previous page's next)."""
        query = (
            select(JobRow)
            .where(scope.allows(), *_conditions(wanted))
            .order_by(JobRow.created_at.desc(), JobRow.seq.desc())
            .limit(limit + 1)
        )
        position = decode_cursor(cursor) if cursor else None
        if position is not None:
            query = query.where(tuple_(JobRow.created_at, JobRow.seq) < tuple_(*position))
        with self._sessions() as s:
            rows = s.scalars(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].seq) if more and rows else None
        return JobPage([record_from_row(row) for row in rows], next_cursor)

    def job(self, scope: ProducerScope, job_id: str) -> tuple[JobRecord, Review] | None:
        """One job the scope may see, with its review; None when unknown or not visible."""
        with self._sessions() as s:
            row = s.scalar(select(JobRow).where(JobRow.job_id == job_id, scope.allows()))
            if row is None:
                return None
            review = Review(row.review_state, row.reviewed_by, iso(row.reviewed_at))
            return record_from_row(row), review

    def reviews(self, job_ids: Sequence[str]) -> dict[str, str]:
        """The review verdict of each of these jobs that has one."""
        if not job_ids:
            return {}
        with self._sessions() as s:
            rows = s.execute(
                select(JobRow.job_id, JobRow.review_state).where(
                    JobRow.job_id.in_(list(job_ids)), JobRow.review_state.is_not(None)
                )
            ).all()
        return {str(job_id): str(state) for job_id, state in rows}

    def thumbnail_kinds(self, job_ids: Sequence[str]) -> dict[str, set[str]]:
        """Which thumbnails (`person`, `garment`) each of these jobs has kept."""
        if not job_ids:
            return {}
        with self._sessions() as s:
            rows = s.execute(
                select(ThumbnailRow.job_id, ThumbnailRow.kind).where(
                    ThumbnailRow.job_id.in_(list(job_ids))
                )
            ).all()
        kinds: dict[str, set[str]] = {}
        for job_id, kind in rows:
            kinds.setdefault(str(job_id), set()).add(str(kind))
        return kinds

    def thumbnail(self, scope: ProducerScope, job_id: str, kind: str) -> bytes | None:
        """The JPEG bytes of one input thumbnail of a job the scope may see."""
        with self._sessions() as s:
            data = s.scalar(
                select(ThumbnailRow.data)
                .join(JobRow, JobRow.job_id == ThumbnailRow.job_id)
                .where(ThumbnailRow.job_id == job_id, ThumbnailRow.kind == kind, scope.allows())
            )
        return bytes(data) if data is not None else None


@dataclass(frozen=True)
class Review:
    """A person's verdict on a job's result; all None before anyone gave one."""

    state: str | None
    by: str | None
    at: str | None


def timeline(record: JobRecord, review: Review) -> list[TimelineEntry]:
    """The moments of a job's life its record keeps, in order.

    The journal of every state change is a log line (`ops.journal`), not a table: the
    record keeps when the job came, was submitted, became overdue and ended, which are
    the moments a reviewer asks about.
    """
    entries = [TimelineEntry(record.created_at, "received", "queued or rejected at intake")]
    if record.submitted_at:
        detail = f"Kling task {record.kling_task_id or '-'}, attempt {record.attempts}"
        entries.append(TimelineEntry(record.submitted_at, "submitted", detail))
    if record.overdue_at:
        entries.append(TimelineEntry(record.overdue_at, "overdue", "past the tracking deadline"))
    if record.finished_at:
        detail = f"{record.error.code}: {record.error.message}" if record.error else ""
        entries.append(TimelineEntry(record.finished_at, str(record.state), detail))
    if review.state and review.at:
        entries.append(TimelineEntry(review.at, f"review: {review.state}", f"by {review.by}"))
    return sorted(entries, key=lambda entry: entry.at)


def _conditions(wanted: JobFilter) -> Iterable[ColumnElement[bool]]:
    if wanted.state is not None:
        yield JobRow.state == wanted.state
    if wanted.metadata_key and wanted.metadata_value is not None:
        yield metadata_field(wanted.metadata_key) == wanted.metadata_value
    if wanted.created_from is not None:
        yield JobRow.created_at >= wanted.created_from
    if wanted.created_to is not None:
        yield JobRow.created_at < wanted.created_to
    if wanted.error_code:
        yield JobRow.error_code == wanted.error_code
    if wanted.review_state:
        yield JobRow.review_state == wanted.review_state


def _midnight(now: float) -> float:
    """The start of today, UTC (the day Kling's units are counted by)."""
    return now - now % _DAY
