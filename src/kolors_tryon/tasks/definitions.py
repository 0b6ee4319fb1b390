"""The tasks, under stable names (`config.task_names.TaskName`: the name is what travels).

`tryon.intake(message)`   validate and record one job message
`tryon.submit(job_id)`    create the Kling task; the Celery task id is the claim owner
`tryon.submit_batch(claims)`  the creates of several fresh claims ([job_id, owner] pairs)
`tryon.track(job_id, n)`  poll number n of the job's task (n is the chain's fence)
`tryon.track_batch(tracks)`  `tryon.track` for several [job_id, n] pairs due together
`tryon.callback(job_id, task)`  a Kling callback that `tryon web` authenticated
`tryon.dispatch()`        hand free account slots to the oldest queued jobs
`tryon.sweep()`           rescue stranded jobs, then dispatch (sent by each worker's timer)
`tryon.recover(released)`  take over lapsed claims (and a stopped or reconnected worker's),
                          track what went unpolled, dispatch: at once, unthrottled
`tryon.copy_results(job_id)`  copy a succeeded job's images to our storage (retried)
`tryon.webhook(id)`       one attempt of a webhook delivery (tasks/webhooks.py)
`tryon.cancelled(job_ids)`  the events, webhooks and freed slots of jobs a door cancelled

No task sleeps: waiting is a new message with a delay (native delayed delivery on
RabbitMQ), so a worker process is never blocked by a job that waits. What happens when a
body raises (an outage waited out, a crash retried, then parked) is the policy of its
base class (`tasks/base.py`); what follows a step is `tasks/followups.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery

from kolors_tryon.config import defaults
from kolors_tryon.config.producers import DEFAULT_PRODUCER
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.observe.context import job_context
from kolors_tryon.pipeline import (
    copy_results,
    dispatch,
    intake,
    intake_many,
    recover,
    submit_batch,
    submit_job,
    sweep,
    track_job,
)
from kolors_tryon.pipeline.callbacks import receive_callback
from kolors_tryon.pipeline.lifecycle import announce_cancelled
from kolors_tryon.store import Claim
from kolors_tryon.store.outage import is_outage
from kolors_tryon.tasks import followups
from kolors_tryon.tasks.base import GuardedTask, TickTask
from kolors_tryon.tasks.messaging import announce, announce_budgets
from kolors_tryon.tasks.outbox import send_task
from kolors_tryon.tasks.runtime import runtime_for
from kolors_tryon.tasks.webhooks import register_webhook_task

log = logging.getLogger(__name__)


def register_tasks(app: Celery) -> None:
    """Define the service's tasks on `app`."""
    register_webhook_task(app)

    def task(name: TaskName, **options: Any) -> Callable[[Callable[..., Any]], Any]:
        # Not shared (Celery's default): a shared task is added to every app made later
        # in the process, where its body would run against the first app's settings.
        return app.task(name=name, shared=False, **options)

    # Recorded jobs are safe in the store whatever happens after: a batch parked for
    # crashing in its announcement parks no job message; a single one is parked as is.
    @task(
        TaskName.INTAKE,
        base=GuardedTask,
        bind=True,
        ignore_result=True,
        parks_raw_message=True,
    )
    def intake_task(
        self: GuardedTask, /, message: str | list[str], producer: str = DEFAULT_PRODUCER
    ) -> str:
        # `producer` was authenticated by the door that sent this message (the AMQP
        # consumer, worker/intake_consumer.py); messages from before it default.
        if isinstance(message, list):
            return _intake_batch(app, message, producer)
        step = intake(runtime_for(app), message, producer)
        followups.after_intake(app, message, step)
        self.follow(step, job_id=None)
        return step.note

    @task(TaskName.SUBMIT, base=GuardedTask, bind=True, ignore_result=True, fails_job=True)
    def submit_task(self: GuardedTask, /, job_id: str) -> str:
        owner = str(self.request.id)
        waits = self.attempt.waits
        if waits == 0:
            # A first run goes the way of a batch of one: a create that stalls is
            # finished by a thread, and this process takes its next message.
            claim = [Claim(job_id, owner)]
            steps = submit_batch(runtime_for(app), claim, early=followups.followed_at_once(app))
            followups.follow_batch(app, steps)
            return steps[0][1].note if steps else "create under way"
        step = submit_job(runtime_for(app), job_id, owner=owner, waits=waits)
        self.follow(step, job_id=job_id)
        return step.note

    # A batch that keeps crashing is parked; its claims' leases run out and the sweep
    # hands each to a new owner, who looks its job up before sending anything.
    @task(TaskName.SUBMIT_BATCH, base=GuardedTask, bind=True, ignore_result=True)
    def submit_batch_task(self: GuardedTask, /, claims: list[list[str]]) -> str:
        batch = [Claim(job_id, owner) for job_id, owner in claims]
        steps = submit_batch(runtime_for(app), batch, early=followups.followed_at_once(app))
        followups.follow_batch(app, steps)
        return ", ".join(sorted({step.note for _, step in steps}))

    @task(TaskName.TRACK, base=GuardedTask, bind=True, ignore_result=True, fails_job=True)
    def track_task(self: GuardedTask, /, job_id: str, poll: int = 0) -> str:
        step = track_job(runtime_for(app), job_id, poll)
        self.follow(step, job_id=job_id)
        return step.note

    # A batch that keeps crashing (a malformed message) is parked; the sweep finds its
    # jobs' chains stale and tracks each again on its own.
    @task(TaskName.TRACK_BATCH, base=GuardedTask, bind=True, ignore_result=True)
    def track_batch_task(self: GuardedTask, /, tracks: list[list[Any]]) -> str:
        return _track_all(app, [(str(job_id), int(poll)) for job_id, poll in tracks])

    # A copy that keeps crashing is parked, but its job stays succeeded.
    @task(TaskName.COPY_RESULTS, base=GuardedTask, bind=True)
    def copy_results_task(self: GuardedTask, /, job_id: str) -> str:
        step = copy_results(runtime_for(app), job_id)
        self.follow(step, job_id=job_id)
        return step.note

    @task(TaskName.CALLBACK, base=GuardedTask, bind=True, ignore_result=True)
    def callback_task(self: GuardedTask, /, job_id: str, task: dict[str, Any]) -> str:
        step = receive_callback(runtime_for(app), job_id, task, tries=self.attempt.waits)
        self.follow(step, job_id=job_id)
        return step.note

    # The store already says `cancelled` (the door's answer came from it): this only
    # tells the world, and hands the freed slots on.
    @task(TaskName.CANCELLED, base=GuardedTask, bind=True, ignore_result=True)
    def cancelled_task(self: GuardedTask, /, job_ids: list[str]) -> str:
        step = announce_cancelled(runtime_for(app), job_ids)
        self.follow(step, job_id=None)
        return step.note

    # An outage skips a tick: the next sweep dispatches again.
    @task(TaskName.DISPATCH, base=TickTask, skipped_result=0)
    def dispatch_task() -> int:
        claims = dispatch(runtime_for(app))
        followups.send_submits(app, claims)
        return len(claims)

    @task(TaskName.SWEEP, base=TickTask, skipped_result={})
    def sweep_task() -> dict[str, int]:
        rt = runtime_for(app)
        result = sweep(rt)
        cleanup = rt.store.account.take_results_cleanup(every=defaults.RESULTS_CLEANUP_EVERY)
        followups.send_rescues(app, result, "sweep")
        announce_budgets(app, result.budgets)
        if cleanup:
            _delete_expired_results(app)
        return {
            "resubmitted": len(result.resubmit),
            "retracked": len(result.retrack),
            "dispatched": len(result.claims),
            "recopied": len(result.recopy),
        }

    # Sent by a worker whose broker connection came back, that stops, or whose heartbeat
    # saw a lapsed claim (worker/heartbeat.py): not throttled like the sweep, because
    # slots sit idle until it runs. An outage skips it: the heartbeat and the sweep ask
    # again.
    @task(TaskName.RECOVER, base=TickTask, skipped_result={}, ignore_result=True)
    def recover_task(released: str | None = None) -> dict[str, int]:
        result = recover(runtime_for(app), released)
        followups.send_rescues(app, result, "recovery")
        return {
            "resubmitted": len(result.resubmit),
            "retracked": len(result.retrack),
            "dispatched": len(result.claims),
        }


def _intake_batch(app: Celery, messages: list[str], producer: str) -> str:
    """Several job messages in one run: validated one by one, recorded in one
    transaction, then one announcement and one claim for all of them, and the claims
    are submitted in the same run (`followups.submit_here`).

    If recording them crashes, each message is sent again on its own as
    `tryon.intake(message)`, where its retries and, in the end, its parking in the
    dead-letter queue concern it alone. An outage (the store away) raises, and the whole
    batch is waited out like any task's (messages already recorded are then duplicates:
    nothing happens twice).
    """
    rt = runtime_for(app)
    try:
        steps = intake_many(rt, messages, producer)
    except Exception as exc:
        if is_outage(exc):
            raise
        log.warning("intake of a batch raised %s: each of its messages alone again", exc)
        for message in messages:
            send_task(app, TaskName.INTAKE, args=[message], kwargs={"producer": producer})
        return "crashed: each message alone again"
    for message, step in zip(messages, steps, strict=True):
        followups.after_intake(app, message, step)
    announce(app, [record for step in steps for record in step.changed])
    if any(step.dispatch for step in steps):
        followups.submit_here(app, dispatch(rt))
    return f"{sum(len(step.changed) for step in steps)} of {len(messages)} recorded"


def _track_all(app: Celery, tracks: list[tuple[str, int]]) -> str:
    """The first polls of jobs submitted together, in one run (one delayed message for
    a whole submit batch instead of one per job).

    Each job's follow-up is gathered as soon as its poll is done, so a later failure
    cannot lose it. If a poll raises (the store away, a crash), that job and the rest go
    in `tryon.track` messages of their own, where its retries and, in the end, its
    parking concern it alone: a poll already taken is never taken twice (the chain's
    fence), so the batch itself is never run again.
    """
    rt = runtime_for(app)
    freed = False
    for done, (job_id, poll) in enumerate(tracks):
        try:
            with job_context(job_id):
                step = track_job(rt, job_id, poll)
        except Exception as exc:
            log.warning(
                "tracking %d job(s) of a batch raised %s: each on its own again",
                len(tracks) - done,
                type(exc).__name__,
            )
            for rest_id, rest_poll in tracks[done:]:
                send_task(app, TaskName.TRACK, args=[rest_id, rest_poll])
            break
        followups.send_follow_ups(app, step, job_id)
        freed = freed or step.dispatch
    if freed:
        followups.dispatch_freed(app)
    return f"{len(tracks)} tracked"


def _delete_expired_results(app: Celery) -> None:
    """Celery's result backend keeps results until something deletes them; beat would,
    but no beat is deployed, so one sweep an hour does it (`result_expires`)."""
    try:
        app.backend.cleanup()
    except Exception:
        log.exception("could not delete expired task results")
