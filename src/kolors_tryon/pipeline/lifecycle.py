"""Cancelling jobs (on request, by their deadline) and retrying them: the Celery-free part.

The door that asks (`tryon cancel`, `POST /v1/jobs/{id}/cancel`) gets its answer from
the store's fenced move at once; what follows a cancel (events, webhooks, the freed
slot's dispatch) is a `tryon.cancelled` message for the workers. A webhook whose
message is lost is planned by the sweep all the same (a terminal job without its
delivery), as for any terminal state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from kolors_tryon.config.producers import DEFAULT_PRODUCER
from kolors_tryon.errors import JobNotFound, TryonError
from kolors_tryon.jobs.models import JOB_ID_MAX_LENGTH
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step
from kolors_tryon.store import JobRecord, JobState, JobStore
from kolors_tryon.store.lifecycle import Cancelled, CancelOutcome

CANCEL_REASON = "cancelled on request before it reached Kling"
# What the answer says of a job whose create may have reached Kling (the API has no
# cancel): it runs to its end there, and it is charged.
AT_KLING_NOTE = (
    "the job may already be at Kling, which has no cancel: it runs to its end and is charged"
)


def cancel_jobs(
    store: JobStore, job_ids: Sequence[str], producer: str = DEFAULT_PRODUCER
) -> list[Cancelled]:
    """Cancel every job of `producer`'s `job_ids` that no create can have reached Kling for.

    One answer per distinct job id, in their order: `cancelled` (never created),
    `at_kling` (it will run and be charged), `ended` or `not_found` (another producer's
    job is not found, as an unknown one is).
    """
    keys = {job_id: _key_of(store, producer, job_id) for job_id in dict.fromkeys(job_ids)}
    answers = store.lifecycle.cancel([k for k in keys.values() if k], reason=CANCEL_REASON)
    by_key = {answer.job_id: answer for answer in answers}
    return [
        replace(by_key[key], job_id=job_id)
        if key
        else Cancelled(job_id, CancelOutcome.NOT_FOUND, None)
        for job_id, key in keys.items()
    ]


def _key_of(store: JobStore, producer: str, job_id: str) -> str | None:
    """The store's key of `producer`'s job `job_id`, or None (unknown, or another's)."""
    record = store.get(job_id, producer)
    return record.key if record is not None else None


def newly_cancelled(answers: Sequence[Cancelled]) -> list[str]:
    """The store keys of the jobs this cancel moved (their events and webhooks are due)."""
    return [
        a.record.key if a.record is not None else a.job_id
        for a in answers
        if a.outcome is CancelOutcome.CANCELLED
    ]


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


# ------------------------------------------------------------------------- retries ----
RETRYABLE_STATES = frozenset({JobState.FAILED, JobState.REJECTED, JobState.CANCELLED})
# Each retry is one try-on: at most one unit of the account (KLING_API.md, billing).
UNITS_PER_RETRY = 1


class RetryRefused(TryonError):
    """A job that cannot be retried (its state, or its photos are gone and none given);
    the message says why and what to do."""


@dataclass(frozen=True)
class RetryPlan:
    """A retry to publish: the new job's message, linked to the old job by `retry_of`."""

    retry_of: str
    job_id: str
    message: dict[str, Any]


def plan_retry(
    store: JobStore,
    job_id: str,
    *,
    human: str | None = None,
    cloth: str | None = None,
    producer: str = DEFAULT_PRODUCER,
) -> RetryPlan:
    """The message of a new job that retries `job_id`: the same model, metadata,
    priority and webhook target, and the same photos unless others are given.

    Raises:
        JobNotFound: no such job.
        RetryRefused: the job is not failed, rejected or cancelled; or its photos are no
            longer kept (a job that reached Kling lost them at submission) and the
            missing one was not given.
    """
    key = _key_of(store, producer, job_id)
    source = store.lifecycle.retry_source(key) if key else None
    if key is None or source is None:
        raise JobNotFound(job_id)
    if source.state not in RETRYABLE_STATES:
        raise RetryRefused(
            f"job {job_id!r} is {source.state}: only failed, rejected or cancelled jobs are retried"
        )
    body = source.body or {}
    photos = {
        "human_image": human or body.get("human_image"),
        "cloth_image": cloth or body.get("cloth_image"),
    }
    missing = [name for name, value in photos.items() if not value]
    if missing:
        raise RetryRefused(
            f"job {job_id!r} no longer keeps its photos (they are dropped once a job "
            f"reaches Kling): give {' and '.join(missing)}"
        )
    new_id = f"{job_id[: JOB_ID_MAX_LENGTH - 6]}-r{source.retries + 1}"
    message: dict[str, Any] = {
        "job_id": new_id,
        "retry_of": key,  # the store's key: the old record finds its retries by it
        **photos,
        "metadata": source.metadata,
        "priority": source.priority,
    }
    optional = {
        "model_name": source.model_name,
        "callback_url": source.callback_url,
        "webhook_events": source.webhook_events,
    }
    message.update({key: value for key, value in optional.items() if value is not None})
    return RetryPlan(retry_of=job_id, job_id=new_id, message=message)


def retry_estimate(plans: Sequence[RetryPlan]) -> str:
    """What a bulk retry may spend, said before it runs."""
    units = len(plans) * UNITS_PER_RETRY
    return f"{len(plans)} job(s) to retry: at most {units} unit(s) of the account, one per try-on"
