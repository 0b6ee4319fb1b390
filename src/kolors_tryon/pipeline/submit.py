"""Submit: spend one credit per job, exactly once, within the account's limits.

The order of writes is what makes a credit buy one result:
1. the job got a slot (`claim_next`): it is `submitting` and has an owner;
2. before the POST, the intent is recorded (`create_pending`, attempts + 1);
3. after the answer, the task id is recorded (`submitted`) or the intent is cleared
   (an answer that proves nothing was created).
A run that finds the intent still pending (its worker died, the connection dropped, the
answer was a 5xxx) first asks Kling for the job's `external_task_id` and adopts the task
it finds; it sends a create again only when Kling says the task does not exist.
"""

from __future__ import annotations

import logging

from kolors_tryon.kling import (
    AccountUnavailableError,
    ConcurrencyLimitError,
    ConfigurationError,
    InvalidRequestError,
    KlingConnectionError,
    KlingError,
    KlingTask,
    NotFoundError,
    PermissionDeniedError,
    PolicyViolationError,
    RateLimitedError,
    TokenError,
)
from kolors_tryon.pipeline.backoff import BUSY_BACKOFF_CAP, backoff_delay
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step
from kolors_tryon.store import CreatePlan, JobState

log = logging.getLogger(__name__)

# Slack added to the attempt window beyond the HTTP timeouts (DB writes, scheduling).
ATTEMPT_SLACK_SECONDS = 5.0


def submit_job(rt: Runtime, job_id: str, owner: str, run: int = 0) -> Step:
    """One submit run for the job whose claim `owner` holds.

    Args:
        rt: the process's runtime.
        job_id: the job (also its Kling external_task_id).
        owner: the claim owner, i.e. the id of the Celery task running this.
        run: how many times this task has already run (drives the 1303 backoff).
    """
    connect, read = rt.settings.http_timeout
    window = connect + read + ATTEMPT_SLACK_SECONDS
    entry = rt.store.enter_submit(job_id, owner, busy_for=window)
    if entry is None:
        return Step(note="not the claim owner: nothing to do")
    if isinstance(entry, float):
        # A redelivered message while an attempt of the same owner may still be running:
        # wait for that attempt's window to end, then look before sending anything.
        return Step(again_in=max(entry - rt.clock(), 0.0) + 1.0, note="attempt in progress")
    try:
        return _attempt(rt, entry, owner, run)
    finally:
        rt.store.leave_submit(job_id, owner)


def _attempt(rt: Runtime, plan: CreatePlan, owner: str, run: int) -> Step:
    settings = rt.settings
    pause = rt.store.current_pause()
    probing = False
    if pause is not None:
        now = rt.clock()
        if not rt.store.take_probe(next_probe=now + settings.account_probe_interval):
            wait = max(pause.until - now, 0.0) + rt.rng.uniform(1.0, 5.0)
            return _wait(rt, plan, owner, wait, f"account paused ({pause.code})")
        probing = True
        log.warning("account paused (%s): job %s goes as the probe", pause.code, plan.job_id)

    if plan.maybe_created:
        try:
            existing = _find_task(rt, plan.job_id)
        except KlingError as err:
            return _on_error(rt, plan, owner, run, err, probing, during_lookup=True)
        if existing is not None:
            log.info(
                "job %s: adopting Kling task %s found by external id", plan.job_id, existing.task_id
            )
            return _accepted(rt, plan, owner, existing, probing)

    rt.store.record_intent(plan.job_id, owner)
    try:
        task = rt.kling.create(plan.body)
    except KlingError as err:
        return _on_error(rt, plan, owner, run, err, probing, during_lookup=False)
    return _accepted(rt, plan, owner, task, probing)


def _find_task(rt: Runtime, job_id: str) -> KlingTask | None:
    """The Kling task created for this job, if any (looked up by external_task_id)."""
    try:
        return rt.kling.get(job_id)
    except NotFoundError:
        return None


def _accepted(rt: Runtime, plan: CreatePlan, owner: str, task: KlingTask, probing: bool) -> Step:
    record = rt.store.mark_submitted(
        plan.job_id, owner, task_id=task.task_id, processing=task.status == "processing"
    )
    resumed = probing and rt.store.clear_pause()
    if resumed:
        log.warning("account probe succeeded: submissions resume")
    if record is None:
        # Our claim was taken over meanwhile; the new owner will look up and adopt this task.
        return Step(dispatch=resumed, note="claim lost after create")
    log.info("job %s submitted as Kling task %s", plan.job_id, task.task_id)
    return Step(
        changed=(record,),
        track_in=rt.settings.track_first_delay,
        track_poll=0,
        dispatch=resumed,
        note="submitted",
    )


def _on_error(
    rt: Runtime,
    plan: CreatePlan,
    owner: str,
    run: int,
    err: KlingError,
    probing: bool,
    *,
    during_lookup: bool,
) -> Step:
    """Classify a Kling error by its business code and decide what happens to the job."""
    settings = rt.settings
    store = rt.store
    if isinstance(err, TokenError):
        return _finish(rt, plan, owner, JobState.FAILED, "configuration", str(err))
    if isinstance(err, AccountUnavailableError | ConfigurationError):
        if not during_lookup:
            store.note_failed_create(plan.job_id, owner, nothing_created=True, spend_retry=False)
        store.pause(_code(err), err.message, until=rt.clock() + settings.account_probe_interval)
        log.critical(
            "Kling refuses submissions (%s): submissions stop for every worker; "
            "a probe is sent every %.0f s. Jobs stay queued.",
            err,
            settings.account_probe_interval,
        )
        return _wait(rt, plan, owner, settings.account_probe_interval, f"account: {err}")
    if isinstance(err, ConcurrencyLimitError):
        if not during_lookup:
            store.note_failed_create(plan.job_id, owner, nothing_created=True, spend_retry=False)
        wait = backoff_delay(
            run,
            base=settings.busy_backoff_base,
            cap=BUSY_BACKOFF_CAP,
            retry_after=err.retry_after,
            rng=rt.rng,
        )
        return _wait(rt, plan, owner, wait, "account slots busy (1303)")
    if isinstance(err, InvalidRequestError | PermissionDeniedError) and not during_lookup:
        # A refused create may be the API telling us the external_task_id exists already.
        try:
            existing = _find_task(rt, plan.job_id)
        except KlingError:
            existing = None
        if existing is not None:
            return _accepted(rt, plan, owner, existing, probing)
        return _finish(rt, plan, owner, JobState.REJECTED, _code(err), err.message)
    if isinstance(err, PolicyViolationError):
        return _finish(rt, plan, owner, JobState.FAILED, _code(err), err.message)
    if isinstance(err, InvalidRequestError | PermissionDeniedError):
        # The lookup itself was refused: a client or configuration bug, worth a retry later.
        log.error("job %s: looking up its Kling task failed: %s", plan.job_id, err)

    # Retryable: 1302, 5000/5001/5002, network. Only a refused connection and a 1302
    # prove nothing was created; anything else may have been, and is looked up next time.
    proven = isinstance(err, RateLimitedError) or (
        isinstance(err, KlingConnectionError) and not err.request_sent
    )
    retries = store.note_failed_create(
        plan.job_id, owner, nothing_created=proven and not during_lookup, spend_retry=True
    )
    if retries > settings.submit_max_retries:
        return _give_up(rt, plan, owner, err)
    wait = backoff_delay(
        retries - 1,
        base=settings.retry_backoff_base,
        cap=settings.retry_backoff_max,
        retry_after=err.retry_after,
        rng=rt.rng,
    )
    return _wait(rt, plan, owner, wait, f"retryable: {err}")


def _give_up(rt: Runtime, plan: CreatePlan, owner: str, err: KlingError) -> Step:
    """The retry budget is spent. A create may still have been accepted: look once more."""
    try:
        existing = _find_task(rt, plan.job_id)
    except KlingError:
        existing = None
    if existing is not None:
        return _accepted(rt, plan, owner, existing, probing=False)
    message = f"gave up after {rt.settings.submit_max_retries} retries; last error: {err}"
    return _finish(rt, plan, owner, JobState.FAILED, "retries_exhausted", message)


def _finish(
    rt: Runtime, plan: CreatePlan, owner: str, state: JobState, code: str, message: str
) -> Step:
    record = rt.store.finish(
        plan.job_id, state, error_code=code, error_message=message, owner=owner
    )
    log.info("job %s %s: %s", plan.job_id, state, message)
    return Step(changed=(record,) if record else (), dispatch=True, note=str(state))


def _wait(rt: Runtime, plan: CreatePlan, owner: str, delay: float, why: str) -> Step:
    """Keep the claim through the wait, and ask to run again after it."""
    until = rt.clock() + delay + rt.settings.submit_lease_seconds
    rt.store.extend_claim(plan.job_id, owner, until)
    return Step(again_in=delay, note=why)


def _code(err: KlingError) -> str:
    return f"kling_{err.code}" if err.code is not None else f"http_{err.http_status}"
