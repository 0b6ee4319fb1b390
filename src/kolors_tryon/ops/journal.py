"""One log line, one metric sample and, when a person should look, one Sentry event per
job state change.

Called where changes are announced (`tasks.messaging.publish_events`: every state move
of every step passes there, once, with the record it produced), so that the journal is
one consistent line per change whichever step made it:

    job sku-1 -> submitted (kling_task_id=86728..., attempt 1)

Sentry gets an event for a job that ends for a reason worth a human's look
(`NOTABLE_ENDS`: retries exhausted, our deadline, a task Kling lost, a configuration
refusal), never for an ordinary rejection or a task Kling failed. Jobs that end because
their task kept crashing (`internal_error`) are reported by the error logged when their
message is parked (Sentry's logging integration turns ERROR lines into events), and an
account pause by the error logged when it starts: neither is reported twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

import sentry_sdk

from kolors_tryon.observe import metrics
from kolors_tryon.store import JobRecord, JobState
from kolors_tryon.store.records import unix_seconds

__all__ = ["NOTABLE_ENDS", "record_changes"]

log = logging.getLogger(__name__)

#: Error codes of ended jobs that deserve an event of their own in Sentry.
NOTABLE_ENDS: Final = frozenset(
    {"retries_exhausted", "deadline", "expired", "task_missing", "kling_1103", "kling_1203"}
)


def record_changes(records: Iterable[JobRecord]) -> None:
    """Journal each record's new state: log line, metrics, and the notable ends."""
    for record in records:
        try:
            _record(record)
        except Exception:  # observing must never take a job down
            log.exception("could not journal the change of job %s", record.job_id)


def _record(record: JobRecord) -> None:
    state = str(record.state)
    error = record.error
    detail = f": {error.code}: {error.message}" if error is not None else ""
    log.info(
        "job %s -> %s (kling_task_id=%s, attempt %d)%s",
        record.job_id,
        state,
        record.kling_task_id or "-",
        record.attempts,
        detail[:500],
        extra={
            "event": "job_state",
            "job_id": record.job_id,
            "state": state,
            "kling_task_id": record.kling_task_id,
            "attempt": record.attempts,
            "error_code": error.code if error is not None else None,
        },
    )
    metrics.job_moved(state)
    created = unix_seconds(record.created_at)
    submitted = unix_seconds(record.submitted_at)
    finished = unix_seconds(record.finished_at)
    # The submission itself (not a later move to processing) is stamped at one instant.
    if submitted is not None and created is not None and record.updated_at == record.submitted_at:
        metrics.queue_wait(submitted - created)
    if record.terminal and submitted is not None and finished is not None:
        metrics.result_latency(state, finished - submitted)
    if record.state is JobState.SUCCEEDED:
        metrics.units_spent(record.final_unit_deduction)
    if record.terminal and error is not None and error.code in NOTABLE_ENDS:
        _report(record, error.code, error.message)


def _report(record: JobRecord, code: str, message: str) -> None:
    """One Sentry event for a job that ended badly (the scrubber runs on it)."""
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("job_id", record.job_id)
        if record.kling_task_id:
            scope.set_tag("kling_task_id", record.kling_task_id)
        scope.set_tag("error_code", code)
        # Grouped by why, not by job: a hundred jobs past the deadline are one issue.
        scope.fingerprint = ["job-ended", code]
        sentry_sdk.capture_message(f"job ended: {code}: {message}"[:1000], level="error")
