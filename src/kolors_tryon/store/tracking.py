"""Tracking: a submitted job followed to its end, and the one place a state moves.

Each state change is one conditional UPDATE whose WHERE lists the states it may come
from (`states.allowed_sources`): forward-only moves hold even with racing workers. The
poll count fences the tracking chain, so a redelivered message cannot fork it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from kolors_tryon.store.database import Database
from kolors_tryon.store.queries import matched, polled, record_in
from kolors_tryon.store.records import JobRecord, ResultImage, record_from_row
from kolors_tryon.store.states import TRACKED_STATES, JobState, allowed_sources
from kolors_tryon.store.tables import JobRow, PayloadRow


class Tracking:
    """Polls, the overdue flag, and the moves to `processing` and to a terminal state."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def mark_processing(self, job_id: str) -> JobRecord | None:
        return self._move(job_id, JobState.PROCESSING)

    def enter_poll(self, job_id: str, poll: int) -> bool:
        """Take poll number `poll` of a tracked job; False if another message took it.

        The poll count is the fence of the tracking chain: each track message carries the
        number it expects, so a duplicated or redelivered message cannot fork the chain.
        """
        with self._db.transaction() as (s, now):
            moved = s.execute(
                update(JobRow)
                .where(JobRow.job_id == job_id, JobRow.polls == poll, polled())
                .values(polls=poll + 1, polled_at=now)
            )
            return matched(moved)

    def mark_overdue(self, job_id: str) -> JobRecord | None:
        """Flag a tracked job overdue (its task outlived our deadline), once.

        A flag, not a state: the job stays `submitted` or `processing`, keeps its slot
        (Kling counts the task until it ends) and is still followed. Returns the record
        when this call set the flag; None when it was set already or the job ended.
        """
        with self._db.transaction() as (s, now):
            moved = s.execute(
                update(JobRow)
                .where(
                    JobRow.job_id == job_id,
                    JobRow.state.in_(TRACKED_STATES),
                    JobRow.overdue_at.is_(None),
                )
                .values(overdue_at=now, updated_at=now)
            )
            if not matched(moved):
                return None
            row = s.scalar(select(JobRow).where(JobRow.job_id == job_id))
            return record_from_row(row) if row is not None else None

    def stale(
        self, *, older_than: float, overdue_older_than: float | None = None, limit: int = 100
    ) -> list[tuple[str, int]]:
        """Tracked jobs nobody has polled for a while, with the poll number to send next.

        Overdue jobs are polled at a slower pace: theirs is `overdue_older_than` (by
        default the same), so that a live slow chain is not doubled by the sweep.
        """
        slow = older_than if overdue_older_than is None else overdue_older_than
        with self._db.transaction() as (s, now):
            last = func.coalesce(JobRow.polled_at, JobRow.submitted_at)
            rows = s.execute(
                select(JobRow.job_id, JobRow.polls)
                .where(
                    polled(),
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
        with self._db.transaction() as (s, now):
            moved = s.execute(
                update(JobRow)
                .where(JobRow.job_id == job_id, JobRow.lingering.is_(True))
                .values(lingering=False, updated_at=now)
            )
            return matched(moved)

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
        with self._db.transaction() as (s, now):
            query = update(JobRow).where(
                JobRow.job_id == job_id, JobRow.state.in_(allowed_sources(target))
            )
            if owner is not None:
                query = query.where(JobRow.lease_owner == owner)
            if finished:
                values["finished_at"] = now
            moved = s.execute(query.values(state=target, updated_at=now, **values))
            if not matched(moved):
                return None
            if drop_payload:
                s.execute(delete(PayloadRow).where(PayloadRow.job_id == job_id))
            return record_in(s, job_id)
