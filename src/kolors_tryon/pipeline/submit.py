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
from collections.abc import Callable

from kolors_tryon.config.backoff import backoff_delay
from kolors_tryon.config.defaults import (
    ATTEMPT_SLACK_SECONDS,
    BUSY_BACKOFF_CAP,
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
from kolors_tryon.pipeline.lifecycle import expire_intent_refused
from kolors_tryon.pipeline.pool import ACCOUNT_REMOVED_CODE, AccountRemoved
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step
from kolors_tryon.store import Busy, Claim, CreatePlan, JobRecord, JobState
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
    return run_entry(rt, entry, owner, waits)


def run_entry(rt: Runtime, entry: CreatePlan | Busy | None, owner: str, waits: int) -> Step:
    """One submit run, once `store.submits.enter` has said where the claim stands."""
    if entry is None:
        return Step(note="not the claim owner: nothing to do")
    if isinstance(entry, Busy):
        # A redelivered message while an attempt of the same owner may still be running:
        # wait for that attempt's window to end, then look before sending anything.
        return Step(again_in=entry.wait + 1.0, note="attempt in progress")
    attempt = Attempt(rt, entry, owner, waits)
    try:
        return attempt.run()
    finally:
        attempt.leave()


#: Receives the steps of a batch's claims that are done while others still wait for
#: their answer (their follow-ups need not wait for a straggler).
EarlySteps = Callable[[list[tuple[Claim, Step]]], None]


class Attempt:
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
            # owner looks the job up before it sends anything; or the job's deadline
            # passed, or it was cancelled. We send nothing.
            return expire_intent_refused(rt, self.job_id)
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
