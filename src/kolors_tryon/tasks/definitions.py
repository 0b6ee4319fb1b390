"""The tasks, under stable names (the name is what travels in the message).

`tryon.intake(message)`   validate and record one job message
`tryon.submit(job_id)`    create the Kling task; the Celery task id is the claim owner
`tryon.track(job_id, n)`  poll number n of the job's task (n is the chain's fence)
`tryon.dispatch()`        hand free account slots to the oldest queued jobs
`tryon.sweep()`           rescue stranded jobs, then dispatch (sent by each worker's timer)

No task sleeps: waiting is a new message with a countdown (native delayed delivery on
RabbitMQ), so a worker process is never blocked by a job that waits. A task that raises
(a bug, a database outage) is retried a few times with backoff, then its message is
parked in the dead-letter queue with the reason and its job, if any, fails: one poison
message never holds back the others.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.exceptions import Retry

from kolors_tryon.config.defaults import TASK_FAILURE_BACKOFF_BASE, TASK_FAILURE_BACKOFF_CAP
from kolors_tryon.kling import redact
from kolors_tryon.pipeline import Step, dispatch, intake, submit_job, sweep, track_job
from kolors_tryon.pipeline.backoff import backoff_delay
from kolors_tryon.store import Claim, JobState
from kolors_tryon.tasks.messaging import dead_letter, publish_events
from kolors_tryon.tasks.runtime import runtime_for, settings_of

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"


def register_tasks(app: Celery) -> None:
    """Define the service's tasks on `app`."""

    @app.task(name="tryon.intake", bind=True, max_retries=None)
    def intake_task(self: Task[Any, Any], message: str) -> str:
        def run() -> str:
            step = intake(runtime_for(app), message)
            if step.dead_letter is not None:
                dead_letter(app, message, step.dead_letter, "application/json")
            _follow(app, self, step, job_id=None)
            return step.note

        return _guarded(app, self, run, job_id=None, parked_body=message)

    @app.task(name="tryon.submit", bind=True, max_retries=None)
    def submit_task(self: Task[Any, Any], job_id: str) -> str:
        def run() -> str:
            runs = int(self.request.retries or 0)
            step = submit_job(runtime_for(app), job_id, owner=str(self.request.id), run=runs)
            _follow(app, self, step, job_id=job_id)
            return step.note

        return _guarded(app, self, run, job_id=job_id)

    @app.task(name="tryon.track", bind=True, max_retries=None)
    def track_task(self: Task[Any, Any], job_id: str, poll: int = 0) -> str:
        def run() -> str:
            step = track_job(runtime_for(app), job_id, poll)
            _follow(app, self, step, job_id=job_id)
            return step.note

        return _guarded(app, self, run, job_id=job_id)

    @app.task(name="tryon.dispatch")
    def dispatch_task() -> int:
        claims = dispatch(runtime_for(app))
        _send_submits(app, claims)
        return len(claims)

    @app.task(name="tryon.sweep")
    def sweep_task() -> dict[str, int]:
        result = sweep(runtime_for(app))
        _send_submits(app, result.resubmit, announce=False)  # already `submitting`
        _send_submits(app, result.claims)
        for job_id, poll in result.retrack:
            app.send_task("tryon.track", args=[job_id, poll])
        if result.resubmit or result.retrack:
            log.warning(
                "sweep rescued %d claim(s) and %d tracking chain(s)",
                len(result.resubmit),
                len(result.retrack),
            )
        return {
            "resubmitted": len(result.resubmit),
            "retracked": len(result.retrack),
            "dispatched": len(result.claims),
        }


def _guarded(
    app: Celery,
    task: Task[Any, Any],
    run: Callable[[], str],
    *,
    job_id: str | None,
    parked_body: str | None = None,
) -> str:
    """Run a task body; retry what raised a few times, then park the message with why."""
    try:
        return run()
    except Retry:
        raise
    except Exception as exc:
        settings = settings_of(app)
        tries = int(task.request.retries or 0)
        reason = f"{task.name} raised {type(exc).__name__}: {redact(str(exc))[:300]}"
        if tries < settings.task_failure_retries:
            log.warning("%s (try %d of %d)", reason, tries + 1, settings.task_failure_retries + 1)
            wait = backoff_delay(
                tries, base=TASK_FAILURE_BACKOFF_BASE, cap=TASK_FAILURE_BACKOFF_CAP
            )
            raise task.retry(countdown=_countdown(wait), max_retries=None) from exc
        log.error("parking the message after %d tries: %s", tries + 1, reason)
        body = parked_body
        if body is None:
            body = json.dumps({"task": task.name, "args": list(task.request.args or [])})
        dead_letter(app, body, reason, "application/json")
        if job_id is not None:
            _fail_job(app, job_id, reason)
        return "parked"


def _fail_job(app: Celery, job_id: str, reason: str) -> None:
    """End a job whose task keeps crashing, so that its slot is freed."""
    try:
        record = runtime_for(app).store.finish(
            job_id, JobState.FAILED, error_code=INTERNAL_ERROR, error_message=reason
        )
    except Exception:
        log.exception("could not record job %s as failed", job_id)
        return
    if record is not None:
        publish_events(app, [record])
        _send_submits(app, dispatch(runtime_for(app)))


def _countdown(seconds: float) -> int:
    """Whole seconds, at least one.

    RabbitMQ's native delayed delivery (used by Celery with quorum queues) works in
    whole seconds and refuses a countdown that rounds down to zero.
    """
    return max(1, math.ceil(seconds))


def _follow(app: Celery, task: Task[Any, Any], step: Step, job_id: str | None) -> None:
    """Do what the step asks: events, run again, track, hand out freed slots."""
    publish_events(app, step.changed)
    if step.again_in is not None:
        # Same task id: for submit it is the claim owner, so the next run keeps the claim.
        task.retry(countdown=_countdown(step.again_in), max_retries=None, throw=False)
    if step.track_in is not None and job_id is not None:
        app.send_task(
            "tryon.track", args=[job_id, step.track_poll], countdown=_countdown(step.track_in)
        )
    if step.dispatch:
        _send_submits(app, dispatch(runtime_for(app)))


def _send_submits(
    app: Celery, claims: tuple[Claim, ...] | list[Claim], *, announce: bool = True
) -> None:
    """One submit message per claim (its task id is the claim's owner), and the events.

    The `submitting` events go first, so that subscribers see the states in order.
    """
    if announce and claims:
        store = runtime_for(app).store
        publish_events(app, [r for c in claims if (r := store.get(c.job_id)) is not None])
    for claim in claims:
        app.send_task("tryon.submit", args=[claim.job_id], task_id=claim.owner)
