"""Kling's callbacks: the fast path to a job's end.

`tryon web` has checked the token in the callback URL (an HMAC of the job id, so the
URL itself proves that we gave it to Kling for this job) and hands the bare task object
over as a message. An authenticated callback is trusted for the task's state: a
`succeed` or `failed` ends the job without a query, and its slot goes to the next job at
once. Kling posts on every status change, repeats included, in any order; that is
harmless because states only move forwards and every move is a conditional UPDATE, so a
repeated or late callback changes nothing.

A callback is ignored when it cannot be about the job's task: the job is unknown or
still `queued`, the task id is not the one we recorded, or the external id is another
job's. A callback that arrives before the create's answer was recorded (the job is still
`submitting`: a very fast task) is looked at again a few seconds later.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kolors_tryon.config import defaults
from kolors_tryon.kling import KlingError
from kolors_tryon.kling.models import parse_task
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step
from kolors_tryon.pipeline.track import record_task_end
from kolors_tryon.store import JobRecord, JobState
from kolors_tryon.store.states import TRACKED_STATES

log = logging.getLogger(__name__)


def receive_callback(rt: Runtime, job_id: str, body: Mapping[str, Any], tries: int = 0) -> Step:
    """Apply one Kling callback for `job_id`.

    Args:
        rt: the process's runtime.
        job_id: the job of the callback URL (authenticated by its token).
        body: the bare task object Kling posted.
        tries: how many times this callback has already waited for the create's answer.
    """
    try:
        task = parse_task(dict(body))
    except KlingError as err:
        return Step(note=f"callback ignored: not a task object ({err})")
    if task.external_task_id is not None and task.external_task_id != job_id:
        return Step(note="callback ignored: another job's task")
    record = rt.store.get(job_id)
    if record is None or record.state is JobState.QUEUED:
        return Step(note="callback ignored: no task was created for this job")
    if record.state is JobState.SUBMITTING:
        if tries >= defaults.EARLY_CALLBACK_TRIES:
            return Step(note="callback dropped: the create's answer never came (polling decides)")
        return Step(
            again_in=defaults.EARLY_CALLBACK_RETRY, note="callback before the create's answer"
        )
    if record.kling_task_id != task.task_id:
        log.warning(
            "job %s: callback for task %s, but the job's task is %s: ignored",
            job_id,
            task.task_id,
            record.kling_task_id,
        )
        return Step(note="callback ignored: another task")
    if record.state is JobState.FAILED:
        return _lingering(rt, record, ended=task.is_terminal)
    if record.state not in TRACKED_STATES:
        return Step(note=f"callback ignored: the job is already {record.state}")
    ended = record_task_end(rt, job_id, task)
    if ended is not None:
        log.info("job %s: Kling's callback says %s", job_id, task.status)
        return ended
    if task.status == "processing" and record.state is JobState.SUBMITTED:
        moved = rt.store.tracking.mark_processing(job_id)
        return Step(changed=(moved,) if moved else (), note="processing")
    return Step(note=f"callback: still {task.status}")


def _lingering(rt: Runtime, record: JobRecord, *, ended: bool) -> Step:
    """A job failed by our deadline whose task Kling now reports: free its slot."""
    if ended and rt.store.tracking.release_lingering(record.key):
        return Step(dispatch=True, note="lingering task ended")
    return Step(note="callback ignored: the job has ended")
