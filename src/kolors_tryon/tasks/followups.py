"""What runs after a step: its events, the next poll, the result copy, the freed slots'
submits, the messages of a sweep or a recovery.

A pipeline step returns a `Step` that says what should follow; this module turns it into
messages. Inside a task run they are gathered and published in one transaction at its
end (`tasks/outbox.py`). Re-running the same message (a wait) is the task's own business
(`GuardedTask.again`), not a follow-up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Celery

from kolors_tryon.config import defaults
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.pipeline import Step, dispatch, submit_batch
from kolors_tryon.pipeline.step import SweepResult
from kolors_tryon.pipeline.submit import EarlySteps
from kolors_tryon.store import Claim
from kolors_tryon.tasks.delays import send_later
from kolors_tryon.tasks.messaging import (
    announce,
    announce_overdue,
    dead_letter,
    publish_events,
    send_webhooks,
)
from kolors_tryon.tasks.outbox import flush, gathering, send_task
from kolors_tryon.tasks.runtime import runtime_for

log = logging.getLogger(__name__)


def send_follow_ups(app: Celery, step: Step, job_id: str | None) -> None:
    """A step's events, and its job's next poll and result copy if it asks for them."""
    announce(app, step.changed)
    announce_overdue(app, step.overdue)
    if job_id is None:
        return
    if step.track_in is not None:
        send_later(app, TaskName.TRACK, args=[job_id, step.track_poll], delay=step.track_in)
    if step.copy_results:
        send_task(app, TaskName.COPY_RESULTS, args=[job_id])


def dispatch_freed(app: Celery) -> None:
    """Hand the slots a step freed to the oldest queued jobs, and send their submits."""
    send_submits(app, dispatch(runtime_for(app)))


def after_intake(app: Celery, message: str, step: Step) -> None:
    """What only intake asks for: a dead letter, conflict events."""
    if step.dead_letter is not None:
        dead_letter(app, message, step.dead_letter, "application/json")
    publish_events(app, step.conflicts, kind="conflict")


def follow_batch(app: Celery, steps: list[tuple[Claim, Step]]) -> None:
    """`GuardedTask.follow` for each claim of a batch: one announcement for all, and a job
    that must run again goes on its own (`tryon.submit` under its claim's owner)."""
    announce(app, [record for _, step in steps for record in step.changed])
    due: dict[tuple[float, int], list[str]] = {}  # jobs whose first poll is due together
    for claim, step in steps:
        if step.again_in is not None:
            send_later(
                app,
                TaskName.SUBMIT,
                args=[claim.job_id],
                kwargs={"waits": 1, "crashes": 0, "outages": 0},
                delay=step.again_in,
                task_id=claim.owner,
            )
        if step.track_in is not None:
            due.setdefault((step.track_in, step.track_poll), []).append(claim.job_id)
    for (delay, poll), job_ids in due.items():
        if len(job_ids) == 1:
            send_later(app, TaskName.TRACK, args=[job_ids[0], poll], delay=delay)
        else:
            tracks = [[job_id, poll] for job_id in job_ids]
            send_later(app, TaskName.TRACK_BATCH, args=[tracks], delay=delay)
    if any(step.dispatch for _, step in steps):
        dispatch_freed(app)


def followed_at_once(app: Celery) -> EarlySteps:
    """What a batch run does with the steps that are done while a straggling create
    still waits for its answer: follow them and publish their messages now, so that
    their events, first polls and freed slots do not wait for it."""

    def follow(steps: list[tuple[Claim, Step]]) -> None:
        follow_batch(app, steps)
        flush(app)

    return follow


def send_submits(
    app: Celery, claims: tuple[Claim, ...] | list[Claim], *, announced: bool = False
) -> None:
    """The submit messages of new claims, and their events.

    One claim: a `tryon.submit` whose task id is the claim's owner. Several: batches of
    up to `SUBMIT_BATCH_MAX` in `tryon.submit_batch` messages (owners in the message),
    so that their writes and creates share transactions and one task run. The
    `submitting` events go first, so that subscribers see the states in order.
    """
    if not announced:
        announce_claims(app, claims)
    if len(claims) == 1 or announced:
        # Rescued claims (already `submitting`) go one by one: each looks its job up first.
        for claim in claims:
            send_task(app, TaskName.SUBMIT, args=[claim.job_id], task_id=claim.owner)
        return
    send_batches(app, claims)


def submit_here(app: Celery, claims: list[Claim]) -> None:
    """Submit the claims an intake run made in the same run, `SUBMIT_BATCH_MAX` at a time.

    The jobs were recorded and claimed by this run: a `tryon.submit_batch` message for
    them would cost a broker hop, a task run and a commit of their own. If a batch raises
    (the store away, a crash), it and the rest go in `tryon.submit_batch` messages after
    all, where a run takes each claim up as a redelivered message would (a claim whose
    attempt may have started waits out its window, and its job is looked up).
    """
    announce_claims(app, claims)
    rt = runtime_for(app)
    size = defaults.SUBMIT_BATCH_MAX
    for start in range(0, len(claims), size):
        chunk = claims[start : start + size]
        try:
            steps = submit_batch(rt, chunk, early=followed_at_once(app))
        except Exception as exc:
            log.warning(
                "submitting %d claim(s) raised %s: they go in submit_batch messages",
                len(claims) - start,
                type(exc).__name__,
            )
            send_batches(app, claims[start:])
            return
        follow_batch(app, steps)


def announce_claims(app: Celery, claims: Sequence[Claim]) -> None:
    """The `submitting` events of new claims (before any event of their submission)."""
    store = runtime_for(app).store
    records = (c.record or store.get(c.job_id) for c in claims)
    announce(app, [r for r in records if r is not None])


def send_batches(app: Celery, claims: Sequence[Claim]) -> None:
    """Claims in `tryon.submit_batch` messages of up to `SUBMIT_BATCH_MAX` (owners in
    the message)."""
    size = defaults.SUBMIT_BATCH_MAX
    for start in range(0, len(claims), size):
        chunk = claims[start : start + size]
        send_task(app, TaskName.SUBMIT_BATCH, args=[[[c.job_id, c.owner] for c in chunk]])


def send_rescues(app: Celery, result: SweepResult, what: str) -> None:
    """The messages of a sweep or a recovery, in one transaction."""
    with gathering(app):
        announce(app, result.cancelled)  # before the claims their slots went to
        send_submits(app, result.resubmit, announced=True)  # already `submitting`
        send_submits(app, result.claims)
        send_webhooks(app, result.webhooks)
        for job_id, poll in result.retrack:
            send_task(app, TaskName.TRACK, args=[job_id, poll])
        for job_id in result.recopy:
            send_task(app, TaskName.COPY_RESULTS, args=[job_id])
    if result.resubmit or result.retrack:
        # A recovery's tracks are mostly duplicates of live chains (it does not wait for
        # a chain to be overdue): only the sweep's finds are worth a warning.
        level = logging.WARNING if what == "sweep" else logging.INFO
        log.log(
            level,
            "%s rescued %d claim(s) and %d tracking chain(s)",
            what,
            len(result.resubmit),
            len(result.retrack),
        )
