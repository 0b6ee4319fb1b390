"""Cancelling jobs (on request, by their deadline): the Celery-free part.

The door that asks (`tryon cancel`, `POST /v1/jobs/{id}/cancel`) gets its answer from
the store's fenced move at once; what follows a cancel (events, webhooks, the freed
slot's dispatch) is a `tryon.cancelled` message for the workers. A webhook whose
message is lost is planned by the sweep all the same (a terminal job without its
delivery), as for any terminal state.
"""

from __future__ import annotations

from collections.abc import Sequence

from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step
from kolors_tryon.store import JobRecord, JobStore
from kolors_tryon.store.lifecycle import Cancelled, CancelOutcome

CANCEL_REASON = "cancelled on request before it reached Kling"
# What the answer says of a job whose create may have reached Kling (the API has no
# cancel): it runs to its end there, and it is charged.
AT_KLING_NOTE = (
    "the job may already be at Kling, which has no cancel: it runs to its end and is charged"
)


def cancel_jobs(store: JobStore, job_ids: Sequence[str]) -> list[Cancelled]:
    """Cancel every job of `job_ids` that no create can have reached Kling for.

    One answer per distinct job id, in their order: `cancelled` (never created),
    `at_kling` (it will run and be charged), `ended` or `not_found`.
    """
    return store.lifecycle.cancel(job_ids, reason=CANCEL_REASON)


def newly_cancelled(answers: Sequence[Cancelled]) -> list[str]:
    """The job ids this cancel moved (their events and webhooks are due)."""
    return [a.job_id for a in answers if a.outcome is CancelOutcome.CANCELLED]


def announce_cancelled(rt: Runtime, job_ids: Sequence[str]) -> Step:
    """What follows a cancel: one event (and webhook) per cancelled job, and a dispatch
    (a cancelled `submitting` job gave its slot back)."""
    records = [rt.store.get(job_id) for job_id in job_ids]
    changed = tuple(r for r in records if r is not None and r.state == "cancelled")
    return Step(changed=changed, dispatch=bool(changed), note=f"{len(changed)} cancelled")


def expire_intent_refused(rt: Runtime, job_id: str) -> Step:
    """The step of a run whose intent was refused: the job's deadline passed (it is
    cancelled now, with the reason), or the claim was taken over (nothing to do)."""
    record: JobRecord | None = rt.store.lifecycle.expire(job_id)
    if record is None:
        return Step(note="claim lost before create")
    return Step(changed=(record,), dispatch=True, note="deadline passed: cancelled")
