"""Submit: spend one credit per job, exactly once, within the account's limits.

The order of writes is what makes a credit buy one result:
1. the job got a slot (`store.claims.next`): it is `submitting` and has an owner;
2. before the POST, the owner records its intent (`store.submits.record_intent`: attempts + 1). That
   write is conditional on the owner still holding a live claim, and it opens an attempt
   window during which nobody may take the claim over: an owner that lost its claim
   never sends a create;
3. after the answer, the task id is recorded (`submitted`), or the failure: an answer
   that does not prove that nothing was made (a timeout, a dropped connection, a 5xxx)
   leaves the job *unresolved*.
A run that finds the job unresolved (or its last attempt never written back: a worker
died) first asks Kling for the job's `external_task_id` and adopts the task it finds. A
"not found" is trusted only once `create_visibility_grace` seconds have passed since the
create may have been made, because the API may show a new task late; until then the job
waits. A clean refusal after an ambiguous attempt (1303, 1302, a refused connection)
proves only that the last POST made nothing, so the ambiguity stays.

Errors that no job can fix (credentials, a token the API refuses, a wrong base URL, an
account out of units) pause submissions for the whole account instead of failing job
after job; one probe is sent every `account_probe_interval` seconds until one succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FutureTimeout

from kolors_tryon.config.backoff import backoff_delay
from kolors_tryon.config.defaults import (
    ATTEMPT_SLACK_SECONDS,
    BUSY_BACKOFF_CAP,
    CREATE_PATIENCE,
)
from kolors_tryon.kling import (
    AccountUnavailableError,
    ConcurrencyLimitError,
    ConfigurationError,
    InvalidRequestError,
    KlingClient,
    KlingConnectionError,
    KlingError,
    KlingTask,
    NotFoundError,
    PermissionDeniedError,
    PolicyViolationError,
    RateLimitedError,
)
from kolors_tryon.observe import metrics
from kolors_tryon.observe.context import job_context
from kolors_tryon.pipeline.pool import ACCOUNT_REMOVED_CODE, AccountRemoved
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step
from kolors_tryon.store import Busy, Claim, Created, CreatePlan, JobRecord, JobState
from kolors_tryon.store.accounts import DEFAULT_ACCOUNT

log = logging.getLogger(__name__)


def attempt_window(rt: Runtime) -> float:
    """The longest one submit run may take: its lookups (with their quick retries) and
    one create, each bounded by the (connect, read) timeout, plus slack."""
    connect, read = rt.settings.http_timeout
    return (rt.settings.http_attempts + 1) * (connect + read) + ATTEMPT_SLACK_SECONDS


def submit_job(rt: Runtime, job_id: str, owner: str, waits: int = 0) -> Step:
    """One submit run for the job whose claim `owner` holds.

    Args:
        rt: the process's runtime.
        job_id: the job (also its Kling external_task_id).
        owner: the claim owner, i.e. the id of the Celery task running this.
        waits: how many times this submission has already waited (drives the 1303
            backoff); waiting is not failing, so it spends no retry budget.
    """
    entry = rt.store.submits.enter(
        job_id, owner, window=attempt_window(rt), grace=rt.settings.create_visibility_grace
    )
    return _run_entry(rt, entry, owner, waits)


def _run_entry(rt: Runtime, entry: CreatePlan | Busy | None, owner: str, waits: int) -> Step:
    """One submit run, once `store.submits.enter` has said where the claim stands."""
    if entry is None:
        return Step(note="not the claim owner: nothing to do")
    if isinstance(entry, Busy):
        # A redelivered message while an attempt of the same owner may still be running:
        # wait for that attempt's window to end, then look before sending anything.
        return Step(again_in=entry.wait + 1.0, note="attempt in progress")
    attempt = _Attempt(rt, entry, owner, waits)
    try:
        return attempt.run()
    finally:
        attempt.leave()


#: Receives the steps of a batch's claims that are done while others still wait for
#: their answer (their follow-ups need not wait for a straggler).
EarlySteps = Callable[[list[tuple[Claim, Step]]], None]


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
    a thread records each straggler as it ends (by its read timeout) and hands its step
    to `early` too, so that a stalled connection holds neither the batch's other jobs nor
    the worker process that the run occupies. A process that dies meanwhile leaves the
    straggler's job with its intent recorded: the sweep's next owner looks it up before
    sending anything. Without `early` the run waits for its stragglers.
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
                steps[claim.job_id] = _run_entry(rt, entry, claim.owner, waits=0)
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
    stalled connection delays neither the batch's other creates nor their tracking (a
    straggler still ends inside its window: it started before `last_start`). Every
    answer is classified as a sequential batch would. With `hand_over`, the steps known
    when the last create was sent are handed over and the stragglers are finished by a
    thread (and left out of the returned steps); without it, here.
    """
    if not plain:
        return {}
    window = attempt_window(rt)
    # Every job's window opens with the intents; a create may start only while it can
    # still end inside it (the window's length, measured on this process's steady
    # clock). Creates answer in milliseconds; a batch that meets slow answers sends the
    # rest later.
    last_start = time.monotonic() + window - _one_create(rt) - ATTEMPT_SLACK_SECONDS
    granted = rt.store.submits.record_intents(
        [(c.job_id, c.owner) for c, _ in plain], window=window
    )
    steps: dict[str, Step] = {}
    made: list[tuple[_Attempt, KlingTask]] = []
    stragglers: dict[Future[KlingTask], _Attempt] = {}
    stopped: float | None = None  # the rest waits this long, when an answer stopped it
    paused = False  # the answer that stopped it paused the account
    # One thread per create at most (a batch is at most SUBMIT_BATCH_MAX): a thread is
    # started only while the previous create is still out, so a healthy batch uses one.
    pool = ThreadPoolExecutor(max_workers=len(plain), thread_name_prefix="tryon-create")
    try:
        for claim, plan in plain:
            attempt = _Attempt(rt, plan, claim.owner, waits=0)
            if claim.job_id not in granted:
                steps[claim.job_id] = Step(note="claim lost before create")
                continue
            if stopped is None and time.monotonic() > last_start:
                stopped = _first_retry(rt)
            if stopped is not None:
                steps[claim.job_id] = _not_sent(attempt, stopped, paused)
                continue
            future = pool.submit(_create, attempt)
            try:
                task = future.result(timeout=CREATE_PATIENCE)
            except FutureTimeout:
                stragglers[future] = attempt  # its thread waits; the batch goes on
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
    stragglers: dict[Future[KlingTask], _Attempt],
    pool: ThreadPoolExecutor,
    hand_over: Callable[[dict[str, Step]], None] | None,
) -> dict[str, Step]:
    """Record each straggling create as it ends (each by its read timeout); hand its
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


def _create(attempt: _Attempt) -> KlingTask:
    """One POST, on a thread of the batch (its log lines and Sentry events name the job)."""
    with job_context(attempt.job_id):
        return attempt.client.create(attempt.create_body())


def _refused(attempt: _Attempt, err: KlingError) -> Step:
    """A create that failed: classified as `submit_job` does, then the run ends."""
    with job_context(attempt.job_id):
        step = attempt.on_create_error(err)
    attempt.leave()
    return step


def _not_sent(attempt: _Attempt, delay: float, paused: bool = False) -> Step:
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


def _record_made(rt: Runtime, made: list[tuple[_Attempt, KlingTask]]) -> dict[str, Step]:
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


class _Attempt:
    """One run of one owner: pause check, lookup if needed, at most one create."""

    def __init__(self, rt: Runtime, plan: CreatePlan, owner: str, waits: int) -> None:
        self.rt = rt
        self.plan = plan
        self.owner = owner
        self.waits = waits
        self.probing = False
        # Set when this run proved (by a trusted "not found") that no task exists.
        self.proved_absent = False
        # Set when this run's write ended the claim (the job left `submitting`).
        self.released = False

    @property
    def job_id(self) -> str:
        return self.plan.job_id

    @property
    def account(self) -> str:
        return self.plan.account

    @property
    def client(self) -> KlingClient:
        """The job's account's client: its create, lookups and probe go there alone."""
        return self.rt.kling_for(self.plan.account)

    def run(self) -> Step:
        try:
            self.client  # noqa: B018 - the account may have left the configuration
        except AccountRemoved as err:
            return self.on_account_removed(err)
        rt, settings = self.rt, self.rt.settings
        pause = self.plan.pause  # read in the transaction that started this run
        if pause is not None:
            probe = rt.store.pool.take_probe(self.account, next_in=settings.account_probe_interval)
            if not probe and self.rehome(f"account {self.account} paused"):
                # Claimed before the pause and never sent: another account takes it.
                return Step(dispatch=True, note=f"moved off paused account {self.account}")
            if not probe:
                wait = pause.remaining + rt.rng.uniform(1.0, 5.0)
                return self.wait(wait, f"account paused ({pause.code}: {pause.message})")
            self.probing = True
            log.warning(
                "account %s paused (%s): job %s goes as the probe",
                self.account,
                pause.code,
                self.job_id,
            )

        if self.plan.maybe_created:
            resolved = self.resolve()
            if resolved is not None:
                return resolved

        if self.plan.retries > settings.submit_max_retries:
            return self.give_up()
        if not rt.store.submits.record_intent(self.job_id, self.owner, window=attempt_window(rt)):
            # The claim was taken over (our lease ran out while we looked): the new
            # owner looks the job up before it sends anything. We send nothing.
            return Step(note="claim lost before create")
        try:
            task = self.client.create(self.create_body())
        except KlingError as err:
            return self.on_create_error(err)
        return self.accepted(task)

    def create_body(self) -> dict[str, object]:
        """The body as validated at intake, with our own callback URL when callbacks are
        on (the producer's `callback_url` is ours to call, never Kling's)."""
        body = dict(self.plan.body)
        body.pop("callback_url", None)
        url = self.rt.kling_callback_url(self.job_id, self.account)
        if url is not None:
            body["callback_url"] = url
        return body

    # --- before a create: is there a task already? ----------------------------------
    def resolve(self) -> Step | None:
        """Look the job up; returns a Step when this run must end here."""
        try:
            existing = find_task(self.rt, self.job_id, self.account)
        except KlingError as err:
            return self.on_lookup_error(err)
        if existing is not None:
            log.info(
                "job %s: adopting Kling task %s found by external id",
                self.job_id,
                existing.task_id,
            )
            return self.accepted(existing)
        if self.plan.trust_not_found_in > 0:
            wait = self.plan.trust_not_found_in + self.rt.rng.uniform(0.5, 2.0)
            return self.wait(wait, "a create may still become visible: looking again later")
        self.rt.store.submits.resolve_not_found(self.job_id, self.owner)
        self.proved_absent = True
        return None

    def on_lookup_error(self, err: KlingError) -> Step:
        """The lookup failed: never create blind, never give up on a job that may be billed."""
        if isinstance(err, AccountUnavailableError | ConfigurationError):
            return self.pause_account(err)
        if not err.retryable:
            log.error("job %s: looking up its Kling task failed: %s", self.job_id, err)
        delay = backoff_delay(
            self.waits,
            base=self.rt.settings.retry_backoff_base,
            cap=self.rt.settings.retry_backoff_max,
            retry_after=err.retry_after,
            rng=self.rt.rng,
        )
        return self.wait(delay, f"lookup failed: {err}")

    # --- after a create ---------------------------------------------------------------
    def leave(self) -> None:
        """End the run. The write that ended the claim (submitted, finished) closed its
        attempt window too; one more transaction to close it again would match nothing."""
        if not self.released:
            self.rt.store.submits.leave(self.job_id, self.owner)

    def accepted(self, task: KlingTask) -> Step:
        record = self.rt.store.submits.mark_submitted(
            self.job_id, self.owner, task_id=task.task_id, processing=task.status == "processing"
        )
        return self.after_submitted(task, record)

    def after_submitted(self, task: KlingTask, record: JobRecord | None) -> Step:
        """Kling made the task and `record` is the job once its id was written (None: the
        claim had been taken over meanwhile)."""
        rt = self.rt
        resumed = self.probing and rt.store.pool.clear_pause(self.account)
        if resumed:
            log.warning("account %s: probe succeeded, submissions resume", self.account)
        if record is None:
            # Our claim was taken over meanwhile; the new owner will look up and adopt it.
            return Step(dispatch=resumed, note="claim lost after create")
        self.released = True  # its log line is the journal's `-> submitted` (ops/journal.py)
        return Step(
            changed=(record,),
            track_in=rt.settings.effective_first_poll,
            track_poll=0,
            dispatch=resumed,
            note="submitted",
        )

    def on_create_error(self, err: KlingError) -> Step:
        """Classify a refused or failed create by its business code."""
        settings, store = self.rt.settings, self.rt.store
        grace = settings.create_visibility_grace
        if isinstance(err, AccountUnavailableError | ConfigurationError):
            # Answered before anything was made: this POST created nothing.
            store.submits.note_failed_create(
                self.job_id, self.owner, ambiguous=False, spend_retry=False, grace=grace
            )
            return self.pause_account(err)
        if isinstance(err, ConcurrencyLimitError):
            store.submits.note_failed_create(
                self.job_id, self.owner, ambiguous=False, spend_retry=False, grace=grace
            )
            wait = backoff_delay(
                self.waits,
                base=settings.busy_backoff_base,
                cap=BUSY_BACKOFF_CAP,
                retry_after=err.retry_after,
                rng=self.rt.rng,
            )
            if self.rt.pooled:  # the other accounts take the work meanwhile
                self.rt.store.pool.back_off(self.account, wait)
            return self.wait(wait, "account slots busy (1303)")
        if isinstance(err, InvalidRequestError | PermissionDeniedError):
            return self.on_refusal(err)
        if isinstance(err, PolicyViolationError):
            return self.finish(JobState.FAILED, _code(err), err.message)

        # Retryable: 1302, 5000/5001/5002, network. Only a refused connection and a 1302
        # prove that this POST made nothing; anything else may have made a task.
        proven = isinstance(err, RateLimitedError) or (
            isinstance(err, KlingConnectionError) and not err.request_sent
        )
        retries = store.submits.note_failed_create(
            self.job_id, self.owner, ambiguous=not proven, spend_retry=True, grace=grace
        )
        wait = backoff_delay(
            retries - 1,
            base=settings.retry_backoff_base,
            cap=settings.retry_backoff_max,
            retry_after=err.retry_after,
            rng=self.rt.rng,
        )
        if not proven:
            # The next run looks the job up first, and not before a new task could show.
            wait = max(wait, min(grace, settings.retry_backoff_max))
        return self.wait(wait, f"retryable: {err}")

    def on_refusal(self, err: KlingError) -> Step:
        """A create refused as invalid. On a first attempt the job is invalid; after an
        earlier attempt the refusal may mean "this external_task_id exists": the job is
        rejected only once a trusted lookup has shown that no task exists."""
        store, grace = self.rt.store, self.rt.settings.create_visibility_grace
        first_attempt = self.plan.attempts == 0 and not self.plan.maybe_created
        if first_attempt or self.proved_absent:
            return self.finish(JobState.REJECTED, _code(err), err.message)
        try:
            existing = find_task(self.rt, self.job_id, self.account)
        except KlingError:
            existing = None
        if existing is not None:
            return self.accepted(existing)
        # Unknown yet: keep the job unresolved, so that the next run looks it up again
        # (and rejects it when a lookup after the grace still finds nothing).
        store.submits.note_failed_create(
            self.job_id, self.owner, ambiguous=True, spend_retry=False, grace=grace
        )
        return self.wait(grace, f"create refused after an earlier attempt: {err}")

    def give_up(self) -> Step:
        """The retry budget is spent and no task exists (a lookup proved it)."""
        message = f"gave up after {self.rt.settings.submit_max_retries} retries"
        return self.finish(JobState.FAILED, "retries_exhausted", message)

    # --- outcomes ---------------------------------------------------------------------
    def pause_account(self, err: KlingError) -> Step:
        settings = self.rt.settings
        hint = configuration_hint(err)
        started = self.rt.store.pool.pause(
            self.account, _code(err), hint, retry_in=settings.account_probe_interval
        )
        if started:
            # ERROR once per pause: Sentry's logging integration makes it the one event
            # an operator is woken by; the other jobs' refusals and failed probes are
            # the same pause, logged as warnings.
            metrics.account_paused(_code(err))
            log.error(
                "submissions paused for the whole account: %s; a probe is sent every %.0f s. "
                "Jobs stay queued.",
                hint,
                settings.account_probe_interval,
            )
        else:
            log.warning("account still paused (job %s refused too): %s", self.job_id, hint)
        if self.rehome(hint):
            return Step(dispatch=True, note=f"moved off paused account {self.account}")
        return self.wait(settings.account_probe_interval, f"account paused: {hint}")

    def rehome(self, why: str) -> bool:
        """With a pool, hand a job that no create of which can exist to another account
        (its account refused cleanly, or is paused). Never a pinned job, never one whose
        earlier create is unresolved (store/accounts.py: `rehome` checks both)."""
        if not self.rt.pooled or (self.plan.maybe_created and not self.proved_absent):
            return False
        if not self.rt.store.pool.rehome(self.job_id, self.owner):
            return False
        self.released = True  # the claim is gone: nothing of ours to leave
        log.info(
            "job %s leaves account %s (%s): another account takes it",
            self.job_id,
            self.account,
            why,
        )
        return True

    def on_account_removed(self, err: AccountRemoved) -> Step:
        """The job's account left the configuration: move the job if no task of it can
        exist there, else fail it with the reason (its credentials are gone)."""
        if self.rehome(str(err)):
            return Step(dispatch=True, note=f"moved off removed account {self.account}")
        return self.finish(JobState.FAILED, ACCOUNT_REMOVED_CODE, str(err))

    def finish(self, state: JobState, code: str, message: str) -> Step:
        record = self.rt.store.tracking.finish(
            self.job_id, state, error_code=code, error_message=message, owner=self.owner
        )
        self.released = record is not None
        log.info("job %s %s: %s", self.job_id, state, message)
        return Step(changed=(record,) if record else (), dispatch=True, note=str(state))

    def wait(self, delay: float, why: str) -> Step:
        """Keep the claim through the wait, and ask to run again after it."""
        self.rt.store.claims.extend(
            self.job_id, self.owner, delay + self.rt.settings.submit_lease_seconds
        )
        return Step(again_in=delay, note=why)


def find_task(rt: Runtime, job_id: str, account: str = DEFAULT_ACCOUNT) -> KlingTask | None:
    """The Kling task created for this job, if any (looked up by external_task_id on the
    job's account: external ids are unique per account, not across accounts).

    A task whose external id is another job's is not ours (a reseller that matched the
    id loosely): it is never adopted.
    """
    try:
        task = rt.kling_for(account).get(job_id)
    except NotFoundError:
        return None
    if task.external_task_id is not None and task.external_task_id != job_id:
        log.error(
            "job %s: lookup returned task %s of external id %r: not adopted",
            job_id,
            task.task_id,
            task.external_task_id,
        )
        return None
    return task


def configuration_hint(err: KlingError) -> str:
    """What an operator should check, in words (the error's code and message included)."""
    if isinstance(err, AccountUnavailableError):
        return f"the account cannot take work ({err}); check its units and billing"
    if err.code in (1003, 1004):
        return (
            f"the API refuses our token ({err}); check this machine's clock "
            "(NTP) and TRYON_KLING_ACCESS_KEY/SECRET_KEY"
        )
    if err.code == 1202 or (err.http_status in (403, 404, 405) and err.code is None):
        return (
            f"the API endpoint was not found ({err}); check TRYON_KLING_BASE_URL "
            "(any reseller prefix included)"
        )
    if err.code == 1304:
        return f"the API refuses this machine's IP address ({err}); check the IP whitelist"
    return f"the API refuses our credentials ({err}); check TRYON_KLING_API_KEY or AK/SK"


def _code(err: KlingError) -> str:
    return f"kling_{err.code}" if err.code is not None else f"http_{err.http_status}"
