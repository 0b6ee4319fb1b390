"""Submit several fresh claims in one run: shared transactions, and creates that stall
hold their own job only.

The promises are `submit.py`'s, job by job; what this module adds is how a batch keeps
them while one create is slow: each POST on a thread of its own, the answers recorded
together, a straggler left to its thread (awaited until its attempt window closes), and
the rest of the batch handed over as soon as it is known.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FutureTimeout

from kolors_tryon.config.backoff import backoff_delay
from kolors_tryon.config.defaults import ATTEMPT_SLACK_SECONDS, CREATE_PATIENCE
from kolors_tryon.kling import (
    AccountUnavailableError,
    ConcurrencyLimitError,
    ConfigurationError,
    InvalidRequestError,
    KlingError,
    KlingTask,
    PermissionDeniedError,
    PolicyViolationError,
)
from kolors_tryon.observe.context import job_context
from kolors_tryon.pipeline.lifecycle import expire_intent_refused
from kolors_tryon.pipeline.pool import AccountRemoved
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step
from kolors_tryon.pipeline.submit import Attempt, EarlySteps, attempt_window, run_entry
from kolors_tryon.store import Claim, Created, CreatePlan

log = logging.getLogger(__name__)


def submit_batch(
    rt: Runtime, claims: Sequence[Claim], early: EarlySteps | None = None
) -> list[tuple[Claim, Step]]:
    """Submit several fresh claims in one run; each claim's step, in their order.

    The same writes as `submit_job`, in the same order for each job, but shared: one
    transaction enters every claim, one records every intent before the first POST, the
    creates go one after another over the pooled session, and one transaction records
    the task ids. Every job's attempt window opens with the intents, so a create is sent
    only while it can still end inside it; the rest waits. A claim that is not plain (the
    account is paused, a task may exist already, another run is mid-attempt) takes the
    single-job path.
    After an answer that no other job would get past either (1303, a pause, a server
    failure, a refused connection), the rest of the batch is not sent: those jobs wait
    and go one by one.
    A create that has not answered within `CREATE_PATIENCE` (a stalled connection, an
    answer coming after the read timeout) is a straggler: it holds its own job only. The
    batch sends the next create meanwhile and records what was answered. With `early`,
    the run then hands every step it has to `early` and returns without the stragglers:
    a thread records each straggler as it ends (its answer, or the end of its attempt
    window) and hands its step to `early` too, so that a stalled connection holds neither
    the batch's other jobs nor the worker process that the run occupies. A process that
    dies meanwhile leaves the straggler's job with its intent recorded: the sweep's next
    owner looks it up before sending anything. Without `early` the run waits for its stragglers.
    """
    if not claims:
        return []
    entries = rt.store.submits.enter_many(
        [(c.job_id, c.owner) for c in claims],
        window=attempt_window(rt),
        grace=rt.settings.create_visibility_grace,
    )
    steps: dict[str, Step] = {}
    plain: list[tuple[Claim, CreatePlan]] = []
    for claim, entry in zip(claims, entries, strict=True):
        if isinstance(entry, CreatePlan) and _is_plain(rt, entry):
            plain.append((claim, entry))
        else:
            with job_context(claim.job_id):
                steps[claim.job_id] = run_entry(rt, entry, claim.owner, waits=0)
    handed_over: set[str] = set()
    not_handed = dict(steps)  # the single-job steps go with the first hand-over

    def hand_over(ready: dict[str, Step]) -> None:
        assert early is not None
        batch = {**not_handed, **ready}
        not_handed.clear()
        handed_over.update(batch)
        early([(claim, batch[claim.job_id]) for claim in claims if claim.job_id in batch])

    steps.update(_create_all(rt, plain, hand_over if early is not None else None))
    return [
        (claim, steps[claim.job_id])
        for claim in claims
        if claim.job_id in steps and claim.job_id not in handed_over
    ]


def _is_plain(rt: Runtime, plan: CreatePlan) -> bool:
    """A first create with nothing to look up, no pause, budget left, on an account
    still configured (a removed one takes the single-job path, which says so)."""
    try:
        rt.kling_for(plan.account)
    except AccountRemoved:
        return False
    return (
        plan.pause is None
        and not plan.maybe_created
        and plan.retries <= rt.settings.submit_max_retries
    )


def _one_create(rt: Runtime) -> float:
    """The longest one create may take: its (connect, read) timeout."""
    connect, read = rt.settings.http_timeout
    return connect + read


def _create_all(
    rt: Runtime,
    plain: list[tuple[Claim, CreatePlan]],
    hand_over: Callable[[dict[str, Step]], None] | None,
) -> dict[str, Step]:
    """The creates of a batch's plain claims: intents, POSTs, then the task ids.

    Each POST runs on a thread of its own and is waited for `CREATE_PATIENCE`; one that
    has not answered by then goes on in its thread while the next is sent, so that one
    stalled connection delays neither the batch's other creates nor their tracking.
    Every answer is classified as a sequential batch would. With `hand_over`, the steps
    known when a straggler is met and when the last create was sent are handed over and
    the stragglers are finished by a thread (and left out of the returned steps);
    without it, here.

    A create's thread waits for its answer until the attempt window closes (`answer_by`),
    not just the read timeout: an answer that comes late (the API backlogged) is then a
    task id, recorded and tracked at once, where a timeout would leave the job ambiguous,
    holding its slot through the visibility grace until a lookup may trust a "not
    found". It costs nothing that is not the job's own: the window is what the store
    already grants a create (nobody takes the claim over meanwhile, and a run that died
    in it is looked up as if its POST arrived at its end), and the thread is not the
    worker process's.
    """
    if not plain:
        return {}
    window = attempt_window(rt)
    # Every job's window opens with the intents (read before them: this process's steady
    # clock ends it no later than the store does). The answers are awaited until then,
    # the slack aside for the writes that follow; a create may start only while it has
    # at least its (connect, read) timeouts left. Creates answer in milliseconds; a batch
    # that meets slow answers sends the rest later.
    answer_by = time.monotonic() + window - ATTEMPT_SLACK_SECONDS
    last_start = answer_by - _one_create(rt)
    granted = rt.store.submits.record_intents(
        [(c.job_id, c.owner) for c, _ in plain], window=window
    )
    steps: dict[str, Step] = {}
    made: list[tuple[Attempt, KlingTask]] = []
    stragglers: dict[Future[KlingTask], Attempt] = {}
    stopped: float | None = None  # the rest waits this long, when an answer stopped it
    paused = False  # the answer that stopped it paused the account
    # One thread per create at most (a batch is at most SUBMIT_BATCH_MAX): a thread is
    # started only while the previous create is still out, so a healthy batch uses one.
    pool = ThreadPoolExecutor(max_workers=len(plain), thread_name_prefix="tryon-create")
    try:
        for claim, plan in plain:
            attempt = Attempt(rt, plan, claim.owner, waits=0)
            if claim.job_id not in granted:
                steps[claim.job_id] = expire_intent_refused(rt, claim.job_id)
                continue
            if stopped is None and time.monotonic() > last_start:
                stopped = _first_retry(rt)
            if stopped is not None:
                steps[claim.job_id] = _not_sent(attempt, stopped, paused)
                continue
            future = pool.submit(_create, attempt, answer_by)
            try:
                task = future.result(timeout=CREATE_PATIENCE)
            except FutureTimeout:
                stragglers[future] = attempt  # its thread waits; the batch goes on
                if hand_over is not None and (made or steps):
                    # What was answered before it goes on now: its events, first polls
                    # and freed slots need not wait out the patience of later stragglers.
                    steps.update(_record_made(rt, made))
                    made.clear()
                    hand_over(dict(steps))
                    steps.clear()
                continue
            except KlingError as err:
                steps[claim.job_id] = _refused(attempt, err)
                if not isinstance(err, JOB_SPECIFIC_ERRORS):
                    stopped = _wait_after_stop(rt, err, steps[claim.job_id])
                    paused = isinstance(err, AccountUnavailableError | ConfigurationError)
                continue
            made.append((attempt, task))
        steps.update(_record_made(rt, made))
    except BaseException:
        pool.shutdown(wait=False)  # a straggler's job is left to the sweep's lookup
        raise
    if stragglers:
        log.warning(
            "%d create(s) of a batch not answered within %g s: the others go on",
            len(stragglers),
            CREATE_PATIENCE,
        )
    if hand_over is None or not stragglers:
        steps.update(_finish_stragglers(rt, stragglers, pool, None))
        return steps
    hand_over(steps)
    threading.Thread(
        target=_finish_stragglers,
        args=(rt, stragglers, pool, hand_over),
        name="tryon-stragglers",
        daemon=True,
    ).start()
    return {}


def _finish_stragglers(
    rt: Runtime,
    stragglers: dict[Future[KlingTask], Attempt],
    pool: ThreadPoolExecutor,
    hand_over: Callable[[dict[str, Step]], None] | None,
) -> dict[str, Step]:
    """Record each straggling create as it ends (each by its attempt window); hand its
    step over at once when `hand_over` is given, else return them all."""
    steps: dict[str, Step] = {}
    try:
        for future in as_completed(stragglers):
            attempt = stragglers[future]
            try:
                try:
                    ended = _record_made(rt, [(attempt, future.result())])
                except KlingError as err:
                    ended = {attempt.job_id: _refused(attempt, err)}
                if hand_over is None:
                    steps.update(ended)
                else:
                    hand_over(ended)
            except Exception:
                if hand_over is None:
                    raise
                # In a thread of its own nobody would see it: the job keeps its intent,
                # so the sweep's next owner looks it up before sending anything.
                log.exception("job %s: recording a late create failed", attempt.job_id)
    finally:
        pool.shutdown(wait=False)
    return steps


def _create(attempt: Attempt, answer_by: float) -> KlingTask:
    """One POST, on a thread of the batch (its log lines and Sentry events name the job),
    whose answer is awaited until `answer_by` (`time.monotonic()`)."""
    with job_context(attempt.job_id):
        within = answer_by - time.monotonic()
        return attempt.client.create(attempt.create_body(), answer_within=within)


def _refused(attempt: Attempt, err: KlingError) -> Step:
    """A create that failed: classified as `submit_job` does, then the run ends."""
    with job_context(attempt.job_id):
        step = attempt.on_create_error(err)
    attempt.leave()
    return step


def _not_sent(attempt: Attempt, delay: float, paused: bool = False) -> Step:
    """Never sent: this job's intent made nothing; it waits, then goes on its own
    (`tryon.submit` under its owner), or, when its account was just paused and a pool
    has others, goes to another account."""
    rt = attempt.rt
    rt.store.submits.note_failed_create(
        attempt.job_id,
        attempt.owner,
        ambiguous=False,
        spend_retry=False,
        grace=rt.settings.create_visibility_grace,
    )
    if paused and attempt.rehome("its account was just paused"):
        return Step(dispatch=True, note=f"moved off paused account {attempt.account}")
    step = attempt.wait(delay, "not sent: the batch was stopped")
    attempt.leave()
    return step


def _record_made(rt: Runtime, made: list[tuple[Attempt, KlingTask]]) -> dict[str, Step]:
    """The task ids of answered creates, in one transaction, and each job's step."""
    if not made:
        return {}
    records = rt.store.submits.mark_submitted_many(
        [Created(a.job_id, a.owner, task.task_id, task.status == "processing") for a, task in made]
    )
    steps: dict[str, Step] = {}
    for (attempt, task), record in zip(made, records, strict=True):
        with job_context(attempt.job_id, kling_task_id=task.task_id):
            steps[attempt.job_id] = attempt.after_submitted(task, record)
    return steps


def _wait_after_stop(rt: Runtime, err: KlingError, step: Step) -> float:
    """How long the unsent rest of a batch waits after `err` stopped it.

    As long as the job that got it, when the answer concerns the account (1303: slots
    busy; a pause); after a server or network failure, a first retry's backoff: those
    jobs were never sent, so the visibility grace that the failed job waits for (its
    create may have been made) is not theirs to wait.
    """
    if step.again_in is not None and isinstance(
        err, ConcurrencyLimitError | AccountUnavailableError | ConfigurationError
    ):
        return step.again_in + rt.rng.uniform(0.0, 1.0)
    return _first_retry(rt, retry_after=err.retry_after)


def _first_retry(rt: Runtime, retry_after: float | None = None) -> float:
    """A first retry's backoff (with jitter): how long unsent jobs of a batch wait."""
    settings = rt.settings
    return backoff_delay(
        0,
        base=settings.retry_backoff_base,
        cap=settings.retry_backoff_max,
        retry_after=retry_after,
        rng=rt.rng,
    )


# Refusals that concern one job's content: the next job of a batch may still go.
JOB_SPECIFIC_ERRORS = (InvalidRequestError, PermissionDeniedError, PolicyViolationError)
