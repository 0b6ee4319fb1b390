"""The tasks, under stable names (the name is what travels in the message).

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

No task sleeps: waiting is a new message with a delay (native delayed delivery on
RabbitMQ), so a worker process is never blocked by a job that waits. Three kinds of
"again" are told apart, because they mean different things:
- a *wait* (the step asked for it: 1303, a paused account, a task still running) is
  normal; it is counted in the message (`waits`) only to grow its backoff;
- an *outage* (the job store or the broker does not answer) is waited out for as long as
  it lasts, with backoff up to `outage_retry_max`: a database failover must not fail or
  park anything;
- a *crash* (any other exception: a bug, a poison message) is retried
  `task_failure_retries` times, then the message is parked in the dead-letter queue with
  the reason and its job, if any, fails: one poison message never holds back the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject

from kolors_tryon.config import defaults
from kolors_tryon.config.backoff import backoff_delay
from kolors_tryon.kling import redact
from kolors_tryon.observe.context import job_context
from kolors_tryon.pipeline import (
    Step,
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
from kolors_tryon.pipeline.step import SweepResult
from kolors_tryon.pipeline.submit import EarlySteps
from kolors_tryon.store import Claim, JobState
from kolors_tryon.store.outage import is_outage
from kolors_tryon.tasks.delays import send_later
from kolors_tryon.tasks.messaging import announce as announce_changes
from kolors_tryon.tasks.messaging import (
    announce_overdue,
    dead_letter,
    publish_events,
    send_webhooks,
)
from kolors_tryon.tasks.outbox import flush, gathering, send_task
from kolors_tryon.tasks.runtime import runtime_for, settings_of
from kolors_tryon.tasks.webhooks import register_webhook_task

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"


class _Run:
    """One execution of a task message: its counters and how to send it again."""

    def __init__(self, app: Celery, task: Task[Any, Any], args: list[Any], counters: Any) -> None:
        self.app = app
        self.task = task
        self.args = args
        self.waits = int(counters.get("waits", 0))
        self.crashes = int(counters.get("crashes", 0))
        self.outages = int(counters.get("outages", 0))

    def again(self, delay: float, **counters: int) -> None:
        """The same message (same task id: for submit it is the claim owner), later."""
        kwargs = {"waits": self.waits, "crashes": self.crashes, "outages": 0}
        kwargs.update(counters)
        send_later(
            self.app,
            str(self.task.name),
            args=self.args,
            kwargs=kwargs,
            delay=delay,
            task_id=str(self.task.request.id),
        )


def register_tasks(app: Celery) -> None:
    """Define the service's tasks on `app`."""
    register_webhook_task(app)

    @app.task(name="tryon.intake", bind=True, ignore_result=True)
    def intake_task(self: Task[Any, Any], /, message: str | list[str], **counters: int) -> str:
        run = _Run(app, self, [message], counters)
        if isinstance(message, list):
            batch = message
            # Recorded jobs are safe in the store whatever happens after: a batch parked
            # for crashing in its announcement parks no job message.
            return _guarded(app, run, lambda: _intake_batch(app, batch), job_id=None)

        def body() -> str:
            step = intake(runtime_for(app), message)
            _after_intake(app, message, step)
            _follow(app, run, step, job_id=None)
            return step.note

        return _guarded(app, run, body, job_id=None, parked_body=message)

    @app.task(name="tryon.submit", bind=True, ignore_result=True)
    def submit_task(self: Task[Any, Any], /, job_id: str, **counters: int) -> str:
        run = _Run(app, self, [job_id], counters)

        def body() -> str:
            owner = str(self.request.id)
            if run.waits == 0:
                # A first run goes the way of a batch of one: a create that stalls is
                # finished by a thread, and this process takes its next message.
                claim = [Claim(job_id, owner)]
                steps = submit_batch(runtime_for(app), claim, early=_followed_at_once(app))
                _follow_batch(app, steps)
                return steps[0][1].note if steps else "create under way"
            step = submit_job(runtime_for(app), job_id, owner=owner, waits=run.waits)
            _follow(app, run, step, job_id=job_id)
            return step.note

        return _guarded(app, run, body, job_id=job_id)

    @app.task(name="tryon.submit_batch", bind=True, ignore_result=True)
    def submit_batch_task(self: Task[Any, Any], /, claims: list[list[str]], **counters: int) -> str:
        run = _Run(app, self, [claims], counters)

        def body() -> str:
            batch = [Claim(job_id, owner) for job_id, owner in claims]
            steps = submit_batch(runtime_for(app), batch, early=_followed_at_once(app))
            _follow_batch(app, steps)
            return ", ".join(sorted({step.note for _, step in steps}))

        # A batch that keeps crashing is parked; its claims' leases run out and the
        # sweep hands each to a new owner, who looks its job up before sending anything.
        return _guarded(app, run, body, job_id=None)

    @app.task(name="tryon.track", bind=True, ignore_result=True)
    def track_task(self: Task[Any, Any], /, job_id: str, poll: int = 0, **counters: int) -> str:
        run = _Run(app, self, [job_id, poll], counters)

        def body() -> str:
            step = track_job(runtime_for(app), job_id, poll)
            _follow(app, run, step, job_id=job_id)
            return step.note

        return _guarded(app, run, body, job_id=job_id)

    @app.task(name="tryon.track_batch", bind=True, ignore_result=True)
    def track_batch_task(self: Task[Any, Any], /, tracks: list[list[Any]], **counters: int) -> str:
        run = _Run(app, self, [tracks], counters)

        def body() -> str:
            return _track_all(app, [(str(job_id), int(poll)) for job_id, poll in tracks])

        # A batch that keeps crashing (a malformed message) is parked; the sweep finds its
        # jobs' chains stale and tracks each again on its own.
        return _guarded(app, run, body, job_id=None)

    @app.task(name="tryon.copy_results", bind=True)
    def copy_results_task(self: Task[Any, Any], /, job_id: str, **counters: int) -> str:
        run = _Run(app, self, [job_id], counters)

        def body() -> str:
            step = copy_results(runtime_for(app), job_id)
            _follow(app, run, step, job_id=job_id)
            return step.note

        # A copy that keeps crashing is parked, but its job stays succeeded.
        return _guarded(app, run, body, job_id=None)

    @app.task(name="tryon.callback", bind=True, ignore_result=True)
    def callback_task(
        self: Task[Any, Any], /, job_id: str, task: dict[str, Any], **counters: int
    ) -> str:
        run = _Run(app, self, [job_id, task], counters)

        def body() -> str:
            step = receive_callback(runtime_for(app), job_id, task, tries=run.waits)
            _follow(app, run, step, job_id=job_id)
            return step.note

        return _guarded(app, run, body, job_id=None)

    @app.task(name="tryon.dispatch")
    def dispatch_task() -> int:
        try:
            claims = dispatch(runtime_for(app))
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("dispatch skipped: the job store does not answer (%s)", type(exc).__name__)
            return 0  # the next sweep dispatches again
        with gathering(app):
            _send_submits(app, claims)
        return len(claims)

    @app.task(name="tryon.sweep")
    def sweep_task() -> dict[str, int]:
        try:
            rt = runtime_for(app)
            result = sweep(rt)
            cleanup = rt.store.account.take_results_cleanup(every=defaults.RESULTS_CLEANUP_EVERY)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("sweep skipped: the job store does not answer (%s)", type(exc).__name__)
            return {}
        _send_rescues(app, result, "sweep")
        if cleanup:
            _delete_expired_results(app)
        return {
            "resubmitted": len(result.resubmit),
            "retracked": len(result.retrack),
            "dispatched": len(result.claims),
            "recopied": len(result.recopy),
        }

    @app.task(name="tryon.recover", ignore_result=True)
    def recover_task(released: str | None = None) -> dict[str, int]:
        # Sent by a worker whose broker connection came back, that stops, or whose
        # heartbeat saw a lapsed claim (worker/heartbeat.py): not throttled like the
        # sweep, because slots sit idle until it runs.
        try:
            result = recover(runtime_for(app), released)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("recovery skipped: the job store does not answer (%s)", type(exc).__name__)
            return {}  # the heartbeat and the sweep ask again
        _send_rescues(app, result, "recovery")
        return {
            "resubmitted": len(result.resubmit),
            "retracked": len(result.retrack),
            "dispatched": len(result.claims),
        }


def _send_rescues(app: Celery, result: SweepResult, what: str) -> None:
    """The messages of a sweep or a recovery, in one transaction."""
    with gathering(app):
        _send_submits(app, result.resubmit, announce=False)  # already `submitting`
        _send_submits(app, result.claims)
        send_webhooks(app, result.webhooks)
        for job_id, poll in result.retrack:
            send_task(app, "tryon.track", args=[job_id, poll])
        for job_id in result.recopy:
            send_task(app, "tryon.copy_results", args=[job_id])
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


def _after_intake(app: Celery, message: str, step: Step) -> None:
    """What only intake asks for: a dead letter, conflict events."""
    if step.dead_letter is not None:
        dead_letter(app, message, step.dead_letter, "application/json")
    publish_events(app, step.conflicts, kind="conflict")


def _intake_batch(app: Celery, messages: list[str]) -> str:
    """Several job messages in one run: validated one by one, recorded in one
    transaction, then one announcement and one claim for all of them, and the claims
    are submitted in the same run (`_submit_here`).

    If recording them crashes, each message is sent again on its own as
    `tryon.intake(message)`, where its retries and, in the end, its parking in the
    dead-letter queue concern it alone. An outage (the store away) raises, and the whole
    batch is waited out like any task's (messages already recorded are then duplicates:
    nothing happens twice).
    """
    rt = runtime_for(app)
    try:
        steps = intake_many(rt, messages)
    except Exception as exc:
        if is_outage(exc):
            raise
        log.warning("intake of a batch raised %s: each of its messages alone again", exc)
        for message in messages:
            send_task(app, "tryon.intake", args=[message])
        return "crashed: each message alone again"
    for message, step in zip(messages, steps, strict=True):
        _after_intake(app, message, step)
    announce_changes(app, [record for step in steps for record in step.changed])
    if any(step.dispatch for step in steps):
        _submit_here(app, dispatch(rt))
    return f"{sum(len(step.changed) for step in steps)} of {len(messages)} recorded"


def _submit_here(app: Celery, claims: list[Claim]) -> None:
    """Submit the claims an intake run made in the same run, `SUBMIT_BATCH_MAX` at a time.

    The jobs were recorded and claimed by this run: a `tryon.submit_batch` message for
    them would cost a broker hop, a task run and a commit of their own. If a batch raises
    (the store away, a crash), it and the rest go in `tryon.submit_batch` messages after
    all, where a run takes each claim up as a redelivered message would (a claim whose
    attempt may have started waits out its window, and its job is looked up).
    """
    _announce_claims(app, claims)
    rt = runtime_for(app)
    size = defaults.SUBMIT_BATCH_MAX
    for start in range(0, len(claims), size):
        chunk = claims[start : start + size]
        try:
            steps = submit_batch(rt, chunk, early=_followed_at_once(app))
        except Exception as exc:
            log.warning(
                "submitting %d claim(s) raised %s: they go in submit_batch messages",
                len(claims) - start,
                type(exc).__name__,
            )
            _send_batches(app, claims[start:])
            return
        _follow_batch(app, steps)


def _followed_at_once(app: Celery) -> EarlySteps:
    """What a batch run does with the steps that are done while a straggling create
    still waits for its answer: follow them and publish their messages now, so that
    their events, first polls and freed slots do not wait for it."""

    def follow(steps: list[tuple[Claim, Step]]) -> None:
        _follow_batch(app, steps)
        flush(app)

    return follow


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
                send_task(app, "tryon.track", args=[rest_id, rest_poll])
            break
        _send_follow_ups(app, step, job_id)
        freed = freed or step.dispatch
    if freed:
        _send_submits(app, dispatch(rt))
    return f"{len(tracks)} tracked"


def _guarded(
    app: Celery,
    run: _Run,
    body: Callable[[], str],
    *,
    job_id: str | None,
    parked_body: str | None = None,
) -> str:
    """Run a task body: wait out outages, retry crashes a few times, then park with why.

    What the body publishes goes in one transaction at its end (`tasks/outbox.py`).
    """
    try:
        with gathering(app):
            return body()
    except Exception as exc:
        settings = settings_of(app)
        if is_outage(exc):
            wait = backoff_delay(
                run.outages, base=defaults.OUTAGE_BACKOFF_BASE, cap=settings.outage_retry_max
            )
            log.warning(
                "%s: the job store or broker does not answer (%s); trying again in %.0f s",
                run.task.name,
                type(exc).__name__,
                wait,
            )
            _again_or_requeue(run, wait, outages=run.outages + 1)
            return "waiting for the store"
        reason = f"{run.task.name} raised {type(exc).__name__}: {redact(str(exc))[:300]}"
        if run.crashes < settings.task_failure_retries:
            tries = settings.task_failure_retries + 1
            log.warning("%s (try %d of %d)", reason, run.crashes + 1, tries)
            wait = backoff_delay(
                run.crashes,
                base=defaults.TASK_FAILURE_BACKOFF_BASE,
                cap=defaults.TASK_FAILURE_BACKOFF_CAP,
            )
            _again_or_requeue(run, wait, crashes=run.crashes + 1)
            return "crashed: trying again"
        log.error("parking the message after %d tries: %s", run.crashes + 1, reason)
        parked = parked_body
        if parked is None:
            parked = json.dumps({"task": run.task.name, "args": run.args})
        dead_letter(app, parked, reason, "application/json")
        if job_id is not None:
            _fail_job(app, job_id, reason)
        return "parked"


def _again_or_requeue(run: _Run, delay: float, **counters: int) -> None:
    """Send the message again later; if even that fails, hand it back to the broker."""
    try:
        run.again(delay, **counters)
    except Exception as exc:
        # Neither acked nor lost: the broker delivers it again.
        raise Reject(f"could not reschedule: {type(exc).__name__}", requeue=True) from None


def _fail_job(app: Celery, job_id: str, reason: str) -> None:
    """End a job whose task keeps crashing, so that its slot is freed."""
    try:
        record = runtime_for(app).store.tracking.finish(
            job_id, JobState.FAILED, error_code=INTERNAL_ERROR, error_message=reason
        )
    except Exception:
        log.exception("could not record job %s as failed", job_id)
        return
    if record is not None:
        announce_changes(app, [record])
        _send_submits(app, dispatch(runtime_for(app)))


def _follow(app: Celery, run: _Run, step: Step, job_id: str | None) -> None:
    """Do what the step asks: events, run again, track, hand out freed slots."""
    _send_follow_ups(app, step, job_id)
    if step.again_in is not None:
        run.again(step.again_in, waits=run.waits + 1)
    if step.dispatch:
        _send_submits(app, dispatch(runtime_for(app)))


def _send_follow_ups(app: Celery, step: Step, job_id: str | None) -> None:
    """A step's events, and its job's next poll and result copy if it asks for them."""
    announce_changes(app, step.changed)
    announce_overdue(app, step.overdue)
    if job_id is None:
        return
    if step.track_in is not None:
        send_later(app, "tryon.track", args=[job_id, step.track_poll], delay=step.track_in)
    if step.copy_results:
        send_task(app, "tryon.copy_results", args=[job_id])


def _follow_batch(app: Celery, steps: list[tuple[Claim, Step]]) -> None:
    """`_follow` for each claim of a batch: one announcement for all, and a job that must
    run again goes on its own (`tryon.submit` under its claim's owner)."""
    announce_changes(app, [record for _, step in steps for record in step.changed])
    due: dict[tuple[float, int], list[str]] = {}  # jobs whose first poll is due together
    for claim, step in steps:
        if step.again_in is not None:
            send_later(
                app,
                "tryon.submit",
                args=[claim.job_id],
                kwargs={"waits": 1, "crashes": 0, "outages": 0},
                delay=step.again_in,
                task_id=claim.owner,
            )
        if step.track_in is not None:
            due.setdefault((step.track_in, step.track_poll), []).append(claim.job_id)
    for (delay, poll), job_ids in due.items():
        if len(job_ids) == 1:
            send_later(app, "tryon.track", args=[job_ids[0], poll], delay=delay)
        else:
            tracks = [[job_id, poll] for job_id in job_ids]
            send_later(app, "tryon.track_batch", args=[tracks], delay=delay)
    if any(step.dispatch for _, step in steps):
        _send_submits(app, dispatch(runtime_for(app)))


def _send_submits(
    app: Celery, claims: tuple[Claim, ...] | list[Claim], *, announce: bool = True
) -> None:
    """The submit messages of new claims, and their events.

    One claim: a `tryon.submit` whose task id is the claim's owner. Several: batches of
    up to `SUBMIT_BATCH_MAX` in `tryon.submit_batch` messages (owners in the message),
    so that their writes and creates share transactions and one task run. The
    `submitting` events go first, so that subscribers see the states in order.
    """
    if announce:
        _announce_claims(app, claims)
    if len(claims) == 1 or not announce:
        # Rescued claims (announce=False) go one by one: each looks its job up first.
        for claim in claims:
            send_task(app, "tryon.submit", args=[claim.job_id], task_id=claim.owner)
        return
    _send_batches(app, claims)


def _announce_claims(app: Celery, claims: Sequence[Claim]) -> None:
    """The `submitting` events of new claims (before any event of their submission)."""
    store = runtime_for(app).store
    records = (c.record or store.get(c.job_id) for c in claims)
    announce_changes(app, [r for r in records if r is not None])


def _send_batches(app: Celery, claims: Sequence[Claim]) -> None:
    """Claims in `tryon.submit_batch` messages of up to `SUBMIT_BATCH_MAX` (owners in
    the message)."""
    size = defaults.SUBMIT_BATCH_MAX
    for start in range(0, len(claims), size):
        chunk = claims[start : start + size]
        send_task(app, "tryon.submit_batch", args=[[[c.job_id, c.owner] for c in chunk]])


def _delete_expired_results(app: Celery) -> None:
    """Celery's result backend keeps results until something deletes them; beat would,
    but no beat is deployed, so one sweep an hour does it (`result_expires`)."""
    try:
        app.backend.cleanup()
    except Exception:
        log.exception("could not delete expired task results")
