"""Intake: validate a job message and record it, `queued` or `rejected`.

A rejected job costs nothing: it is recorded with the field and rule that failed and
never reaches the API. A message that is not even a JSON object has no id to record it
under; the caller dead-letters it with the reason instead.
"""

from __future__ import annotations

import logging

from kolors_tryon.jobs import JobRejected, validate_job
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step

log = logging.getLogger(__name__)

REJECTED_CODE = "invalid_job"


def intake(rt: Runtime, message: str | bytes) -> Step:
    """Validate and record one job message; asks for a dispatch when a job was queued."""
    try:
        valid = validate_job(message, rt.validation_options)
    except JobRejected as rejection:
        if rejection.job_id is None:
            return Step(dead_letter=rejection.reason, note="unrecordable message")
        record, created = rt.store.reject(
            rejection.job_id, code=REJECTED_CODE, message=rejection.reason
        )
        log.info("job %s rejected: %s", rejection.job_id, rejection.reason)
        return Step(changed=(record,) if created else (), note="rejected")
    record, created = rt.store.accept(
        valid.job_id,
        body=valid.body.to_request(),
        priority=valid.message.priority,
        model_name=str(valid.message.model_name),
        metadata=valid.message.metadata,
    )
    if not created:
        log.info("job %s already known (state %s): not queued again", valid.job_id, record.state)
        return Step(note="duplicate")
    return Step(changed=(record,), dispatch=True, note="queued")
