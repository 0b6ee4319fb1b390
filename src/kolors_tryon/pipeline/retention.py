"""Retention and privacy: old records go (`tryon purge`), a person's photos go (`tryon forget`).

Both delete stored copies by the location the record names, whatever backend is
configured now, and also everything under the job's prefix in the configured backend
(copies the record no longer names). Both are idempotent: run them again after a
storage outage and they finish what they could not.

What neither can reach: Kling's own copies (the API has no delete; they expire after
30 days), and messages parked in `tryon.dead` (an operator drains that queue).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from kolors_tryon.config import defaults
from kolors_tryon.pipeline.storage import ResultCopies, StorageError
from kolors_tryon.store import JobRecord, JobState, JobStore

log = logging.getLogger(__name__)

DAY = 86400.0
# What a forgotten record says in place of its note and error message.
FORGOTTEN_NOTE = "forgotten on request: photos, images, metadata and messages removed"


@dataclass
class PurgeReport:
    """What `purge` deleted (or, in a dry run, would delete)."""

    dry_run: bool
    jobs: Counter[str] = field(default_factory=Counter)
    copies: int = 0
    # Jobs kept because a copy could not be deleted (the storage did not answer).
    kept: int = 0

    def to_json_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "jobs": sum(self.jobs.values()),
            "by_state": dict(sorted(self.jobs.items())),
            "copies": self.copies,
            "kept": self.kept,
        }


def purge(
    store: JobStore,
    copies: ResultCopies,
    *,
    older_than_days: float,
    dry_run: bool = False,
    batch: int = defaults.PURGE_BATCH,
) -> PurgeReport:
    """Delete terminal jobs that ended more than `older_than_days` ago, copies first.

    A job's rows go only after its copies are deleted, so a storage outage never leaves
    copies that no record names: that job is kept (counted in `kept`) for the next run.
    Age is measured on the store's clock (`finished_at`), like every other time.
    """
    report = PurgeReport(dry_run=dry_run)
    older_than = older_than_days * DAY
    after = 0
    while True:
        page = store.retention.purgeable(older_than=older_than, after_seq=after, limit=batch)
        if not page:
            return report
        after = page[-1][0]
        for _, record in page:
            located = [img.stored for img in record.images if img.stored]
            if dry_run:
                report.jobs[record.state] += 1
                report.copies += len(located)
                continue
            try:
                deleted = _delete_copies(copies, record.key, located)
            except StorageError as exc:
                log.warning("purge kept job %s: %s", record.key, exc)
                report.kept += 1
                continue
            if store.retention.delete_ended(record.key, older_than=older_than):
                report.jobs[record.state] += 1
                report.copies += deleted


@dataclass(frozen=True)
class ForgetReport:
    """What `store.retention.forget` did: `in_flight` means nothing was done (run it after
    the job ends)."""

    job_id: str
    state: JobState
    in_flight: bool
    copies: int
    payload_deleted: bool
    already_forgotten: bool
    record: JobRecord

    def to_json_dict(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "state": str(self.state),
            "in_flight": self.in_flight,
            "copies_deleted": self.copies,
            "payload_deleted": self.payload_deleted,
            "already_forgotten": self.already_forgotten,
        }


def forget(store: JobStore, copies: ResultCopies, job_id: str) -> ForgetReport | None:
    """Remove a person's photos and results from a job; None if the job is unknown.

    The record is cleared first (in one transaction: from then on nobody reads the
    photos, and a copy that lands late finds no image to fill in and deletes itself),
    then the copies are deleted. If the storage does not answer, StorageError is
    raised after the record was cleared: run it again (the job's prefix is swept).
    """
    done = store.retention.forget(job_id, note=FORGOTTEN_NOTE)
    if done is None:
        return None
    deleted = 0
    if not done.in_flight:
        deleted = _delete_copies(copies, job_id, list(done.locations))
    return ForgetReport(
        job_id=job_id,
        state=done.record.state,
        in_flight=done.in_flight,
        copies=deleted,
        payload_deleted=done.payload_deleted,
        already_forgotten=not done.changed and not done.in_flight,
        record=done.record,
    )


def _delete_copies(copies: ResultCopies, job_id: str, locations: list[str]) -> int:
    """Delete the named copies, then whatever else is under the job's prefix."""
    deleted = sum(copies.delete(location) for location in locations)
    # Listed after the named ones are gone: this counts strays only.
    return deleted + copies.delete_job(job_id)
