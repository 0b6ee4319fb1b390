"""Retention: purging ended jobs, and forgetting a person's photos on request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from kolors_tryon.store.database import Database
from kolors_tryon.store.queries import matched, purgeable
from kolors_tryon.store.records import JobRecord, record_from_row
from kolors_tryon.store.states import IN_FLIGHT_STATES, JobState
from kolors_tryon.store.tables import JobRow, PayloadRow, ResultCopyRow, ThumbnailRow


@dataclass(frozen=True)
class Forgotten:
    """What `Retention.forget` did to a job's record.

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


class Retention:
    """Which ended jobs may go, their deletion, and forgetting one job's personal data."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def purgeable(
        self, *, older_than: float, after_seq: int = 0, limit: int = 200
    ) -> list[tuple[int, JobRecord]]:
        """Terminal jobs that ended more than `older_than` seconds ago, by `seq`.

        A lingering job (failed by our deadline, its Kling task maybe still running)
        still holds an account slot and is not purgeable until it lets go.
        """
        with self._db.transaction() as (s, now):
            rows = s.scalars(
                select(JobRow)
                .where(*purgeable(now - older_than), JobRow.seq > after_seq)
                .order_by(JobRow.seq)
                .limit(limit)
            ).all()
            return [(row.seq, record_from_row(row)) for row in rows]

    def delete_ended(self, job_id: str, *, older_than: float) -> bool:
        """Delete one purgeable job's rows (conditional: it must still be purgeable)."""
        with self._db.transaction() as (s, now):
            s.execute(delete(PayloadRow).where(PayloadRow.job_id == job_id))
            s.execute(delete(ResultCopyRow).where(ResultCopyRow.job_id == job_id))
            # A purged job's thumbnails go with it (the console shows nothing of it).
            s.execute(delete(ThumbnailRow).where(ThumbnailRow.job_id == job_id))
            gone = s.execute(
                delete(JobRow).where(JobRow.job_id == job_id, *purgeable(now - older_than))
            )
            return matched(gone)

    def forget(self, job_id: str, *, note: str) -> Forgotten | None:
        """Clear everything personal from a job's record; None if the job is unknown.

        Kept: the ids (job, Kling task), the states and times, the error code and the
        counters. Cleared: the image URLs and copies, the metadata, the error message,
        the note, the content hash (a hash of the photos), the create body. A queued job
        (never sent) ends `failed` with code `forgotten`; a job in flight at Kling is
        left as it is (`in_flight`): its result is still to come, forget it after.
        """
        with self._db.transaction() as (s, now):
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
