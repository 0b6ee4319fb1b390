"""The tasks, under stable names (the name is what travels in the message).

`tryon.intake(message)`   validate and record one job message
`tryon.submit(job_id)`    create the Kling task; the Celery task id is the claim owner
`tryon.track(job_id, n)`  poll number n of the job's task (n is the chain's fence)
`tryon.dispatch()`        hand free account slots to the oldest queued jobs
`tryon.sweep()`           rescue stranded jobs, then dispatch (sent by each worker's timer)

No task sleeps: waiting is a new message with a countdown (native delayed delivery on
RabbitMQ), so a worker process is never blocked by a job that waits.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from celery import Celery, Task

from kolors_tryon.pipeline import Step, dispatch, intake, submit_job, sweep, track_job
from kolors_tryon.store import Claim
from kolors_tryon.worker.messaging import dead_letter, publish_events
from kolors_tryon.worker.runtime import runtime_for

log = logging.getLogger(__name__)


def register_tasks(app: Celery) -> None:
    """Define the service's tasks on `app`."""

    @app.task(name="tryon.intake", bind=True)
    def intake_task(self: Task[Any, Any], message: str) -> str:
        step = intake(runtime_for(app), message)
        if step.dead_letter is not None:
            dead_letter(app, message, step.dead_letter, "application/json")
        _follow(app, self, step, job_id=None)
        return step.note

    @app.task(name="tryon.submit", bind=True, max_retries=None)
    def submit_task(self: Task[Any, Any], job_id: str) -> str:
        runs = int(self.request.retries or 0)
        step = submit_job(runtime_for(app), job_id, owner=str(self.request.id), run=runs)
        _follow(app, self, step, job_id=job_id)
        return step.note

    @app.task(name="tryon.track", bind=True)
    def track_task(self: Task[Any, Any], job_id: str, poll: int = 0) -> str:
        step = track_job(runtime_for(app), job_id, poll)
        _follow(app, self, step, job_id=job_id)
        return step.note

    @app.task(name="tryon.dispatch")
    def dispatch_task() -> int:
        claims = dispatch(runtime_for(app))
        _send_submits(app, claims)
        return len(claims)

    @app.task(name="tryon.sweep")
    def sweep_task() -> dict[str, int]:
        result = sweep(runtime_for(app))
        _send_submits(app, result.resubmit + result.claims)
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
        app.send_task("tryon.track", args=[job_id, step.track_poll], countdown=_countdown(step.track_in))
    if step.dispatch:
        _send_submits(app, dispatch(runtime_for(app)))


def _send_submits(app: Celery, claims: tuple[Claim, ...] | list[Claim]) -> None:
    for claim in claims:
        app.send_task("tryon.submit", args=[claim.job_id], task_id=claim.owner)
