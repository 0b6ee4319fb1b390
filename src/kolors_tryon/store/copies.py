"""Copies of a succeeded job's result images in our storage (Kling's expire in 30 days).

A copy is due as a row (`ResultCopyRow`) before the job is recorded succeeded, so that a
worker dying between the two leaves it due and the sweep sends it (`lost`).
"""

from __future__ import annotations

from sqlalchemy import delete, select, update

from kolors_tryon.store.database import Database
from kolors_tryon.store.records import ResultImage
from kolors_tryon.store.states import JobState
from kolors_tryon.store.tables import JobRow, ResultCopyRow


class Copies:
    """The result copies still due, their tries, and filling them into the record."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def expect(self, job_id: str) -> None:
        """Note that the job's result images are to be copied (idempotent).

        Written before the job is recorded succeeded, so that a worker dying between the
        two leaves the copy due, and the sweep sends it.
        """
        with self._db.transaction() as (s, now):
            if s.get(ResultCopyRow, job_id) is None:
                s.add(ResultCopyRow(job_id=job_id, tries=0, due_at=now))

    def take(self, job_id: str) -> int | None:
        """Start one copy run: the failed tries so far, or None if no copy is due.

        Marks the copy as running now, so that the sweep does not send it again for
        `lost_after` seconds; a copy given up for good (`due_at` NULL) is not taken.
        """
        with self._db.transaction() as (s, now):
            row = s.get(ResultCopyRow, job_id, with_for_update=True)
            if row is None or row.due_at is None:
                return None
            row.due_at = now
            return row.tries

    def record(self, job_id: str, copies: list[ResultImage]) -> list[str] | None:
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
        with self._db.transaction() as (s, now):
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

    def failed(self, job_id: str, *, retry_in: float, error: str) -> int:
        """A copy run failed for now: due again in `retry_in` s; returns the tries spent."""
        with self._db.transaction() as (s, now):
            row = s.get(ResultCopyRow, job_id, with_for_update=True)
            if row is None:
                return 0
            row.tries += 1
            row.due_at = now + retry_in
            row.last_error = error
            return row.tries

    def give_up(self, job_id: str, *, error: str) -> None:
        """The copy can never succeed (not an image, too large, a URL answering 4xx)."""
        with self._db.transaction() as (s, _):
            s.execute(
                update(ResultCopyRow)
                .where(ResultCopyRow.job_id == job_id)
                .values(due_at=None, last_error=error)
            )

    def drop(self, job_id: str) -> None:
        """Nothing (more) to copy for this job."""
        with self._db.transaction() as (s, _):
            s.execute(delete(ResultCopyRow).where(ResultCopyRow.job_id == job_id))

    def status(self, job_id: str) -> tuple[int, float | None, str | None] | None:
        """(tries, due_at, last_error) of a pending copy, or None when none is pending."""
        with self._db.session() as s:
            row = s.get(ResultCopyRow, job_id)
            return (row.tries, row.due_at, row.last_error) if row is not None else None

    def lost(self, *, lost_after: float, limit: int = 100) -> list[str]:
        """Copies due more than `lost_after` seconds ago: their message was lost.

        Each one returned is marked as running now, so that the next sweeps do not send
        it again before `lost_after` has passed once more.
        """
        with self._db.transaction() as (s, now):
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
