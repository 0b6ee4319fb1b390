"""Intake: validate a job message and record it, `queued` or `rejected`.

A rejected job costs nothing: it is recorded with the field and rule that failed and
never reaches the API. A message that is not even a JSON object has no id to record it
under; the caller dead-letters it with the reason instead.

The same job id again: the same content is a duplicate (nothing happens, one job, one
credit); other content is a conflict, counted and noted on the record and announced as
a `job.conflict` event, but not taken; except for a `rejected` job, which never reached
the API: a corrected message under its id starts it over (a resubmission).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from kolors_tryon.config import defaults
from kolors_tryon.config.producers import DEFAULT_PRODUCER
from kolors_tryon.jobs import JobRejected, ValidJob, validate_job
from kolors_tryon.jobs.ids import content_digest
from kolors_tryon.pipeline.pool import refuse_unrunnable
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step
from kolors_tryon.pipeline.thumbnails import keep_input_thumbnails
from kolors_tryon.store import Admission, Admitted, JobState, NewJob

log = logging.getLogger(__name__)

REJECTED_CODE = "invalid_job"


def intake(rt: Runtime, message: str | bytes, producer: str = DEFAULT_PRODUCER) -> Step:
    """Validate and record one job message of `producer` (its door has authenticated
    it); asks for a dispatch when a job was queued."""
    (step,) = intake_many(rt, [message], producer)
    return step


def intake_many(
    rt: Runtime, messages: Sequence[str | bytes], producer: str = DEFAULT_PRODUCER
) -> list[Step]:
    """`intake` for several messages of one producer, a step each in their order:
    validated one by one, the valid ones recorded in one transaction
    (`store.intake.accept`)."""
    steps: dict[int, Step] = {}
    valid: list[tuple[int, NewJob]] = []
    checked_jobs: list[ValidJob] = []
    for i, (message, checked) in enumerate(zip(messages, _validate_all(rt, messages), strict=True)):
        digest = content_digest(message)
        if not isinstance(checked, JobRejected):
            checked = refuse_unrunnable(rt, checked)
        if isinstance(checked, JobRejected):
            steps[i] = _rejected(rt, checked, digest, producer)
            continue
        checked_jobs.append(checked)
        deadline_at, deadline_in = checked.message.deadline_parts()
        valid.append(
            (
                i,
                NewJob(
                    checked.job_id,
                    body=checked.body.to_request(),
                    content_hash=digest,
                    priority=checked.message.priority,
                    model_name=str(checked.message.model_name),
                    metadata=checked.message.metadata,
                    callback_url=checked.message.callback_url,
                    webhook_events=checked.message.webhook_events,
                    deadline_at=deadline_at,
                    deadline_in=deadline_in,
                    retry_of=checked.message.retry_of,
                    account_pin=checked.message.account,
                    producer=producer,
                    batch_id=checked.message.batch_id,
                ),
            )
        )
    batches = [job.batch_id for _, job in valid if job.batch_id is not None]
    if batches:
        rt.store.batches.open(producer, batches)
    admitted = rt.store.intake.accept([job for _, job in valid])
    for (i, _), one in zip(valid, admitted, strict=True):
        steps[i] = _step(one, dispatch=True)
    keep_input_thumbnails(rt, zip(checked_jobs, admitted, strict=True))
    _expire_late(rt, valid, steps)
    return [steps[i] for i in range(len(messages))]


def _expire_late(rt: Runtime, valid: list[tuple[int, NewJob]], steps: dict[int, Step]) -> None:
    """Jobs recorded after their deadline (every worker was down until then) are
    cancelled at once, with the reason: their `cancelled` event follows `queued`."""
    instants = {job.job_id: i for i, job in valid if job.deadline_at is not None}
    if not instants:
        return
    for record in rt.store.lifecycle.expire_among(list(instants)):
        i = instants[record.job_id]
        steps[i] = replace(steps[i], changed=(*steps[i].changed, record))


def _validate_all(rt: Runtime, messages: Sequence[str | bytes]) -> list[ValidJob | JobRejected]:
    """Each message's validation, in order.

    With URL preflight on, a message may wait out its images' deadlines on a slow host,
    so the messages of a run are checked side by side on a few threads: a run of 50
    such jobs takes a few deadlines, not fifty (one intake task ran 106 s).
    """
    options = rt.validation_options

    def check(message: str | bytes) -> ValidJob | JobRejected:
        try:
            return validate_job(message, options)
        except JobRejected as rejection:
            return rejection

    if not options.url_preflight or len(messages) < 2:
        return [check(message) for message in messages]
    threads = min(len(messages), defaults.INTAKE_PREFLIGHT_THREADS)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="preflight") as pool:
        return list(pool.map(check, messages))


def _rejected(rt: Runtime, rejection: JobRejected, digest: str, producer: str) -> Step:
    """Record a job that failed validation (or dead-letter a message with no job id)."""
    if rejection.job_id is None:
        return Step(dead_letter=rejection.reason, note="unrecordable message")
    admitted = rt.store.intake.reject(
        rejection.job_id,
        code=REJECTED_CODE,
        message=rejection.reason,
        content_hash=digest,
        callback_url=rejection.callback_url,
        webhook_events=rejection.webhook_events,
        producer=producer,
    )
    if admitted.record.state is JobState.REJECTED and admitted.changed:
        log.info("job %s rejected: %s", rejection.job_id, rejection.reason)
    return _step(admitted, dispatch=False)


def _step(admitted: Admitted, *, dispatch: bool) -> Step:
    record, outcome = admitted.record, admitted.outcome
    if outcome is Admission.DUPLICATE:
        log.info("job %s already known (state %s): not queued again", record.job_id, record.state)
        return Step(note="duplicate")
    if outcome is Admission.CONFLICT:
        log.warning("job %s: %s", record.job_id, record.note)
        return Step(conflicts=(record,), note="conflict")
    if outcome is Admission.RESUBMITTED:
        log.info("job %s resubmitted after its rejection: now %s", record.job_id, record.state)
    return Step(changed=(record,), dispatch=dispatch, note=str(record.state))
