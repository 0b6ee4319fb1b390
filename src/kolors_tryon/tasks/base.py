"""The task classes that hold the guard policy, so that each task body only says what it does.

Every task is made with `base=` one of these (Celery's way of sharing behaviour between
tasks, as saleor's `task_cls` and dramatiq's retries middleware keep the policy in one
place). Celery calls a task's `__call__` when its class overrides it, and the
options given to `app.task(...)` become class attributes, so a task states its own part
of the policy there (`fails_job=True`).

Three kinds of "again" are told apart, because they mean different things:
- a *wait* (the step asked for it: 1303, a paused account, a task still running) is
  normal; it is counted in the message (`waits`) only to grow its backoff;
- an *outage* (the job store or the broker does not answer) is waited out for as long as
  it lasts, with backoff up to `outage_retry_max`: a database failover must not fail or
  park anything;
- a *crash* (any other exception: a bug, a poison message) is retried
  `task_failure_retries` times, then the message is parked in the dead-letter queue with
  the reason and its job, if any, fails: one poison message never holds back the others.

The counters travel in the message's kwargs and are taken off before the body runs, so
a body's signature is its arguments only.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar

from celery import Task
from celery.exceptions import Reject

from kolors_tryon.config import defaults
from kolors_tryon.config.backoff import backoff_delay
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.kling import redact
from kolors_tryon.pipeline import Step
from kolors_tryon.store import JobState
from kolors_tryon.store.outage import is_outage
from kolors_tryon.tasks import followups
from kolors_tryon.tasks.delays import send_later
from kolors_tryon.tasks.messaging import announce, dead_letter
from kolors_tryon.tasks.outbox import gathering
from kolors_tryon.tasks.runtime import runtime_for, settings_of

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class Attempt:
    """One execution of a task message: its arguments and its counters."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    waits: int = 0
    crashes: int = 0
    outages: int = 0

    @classmethod
    def taking_counters(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Attempt:
        """The attempt of a message; its counters are removed from `kwargs`."""
        counters = {name: int(kwargs.pop(name, 0)) for name in ("waits", "crashes", "outages")}
        return cls(args, dict(kwargs), **counters)


_attempt: ContextVar[Attempt] = ContextVar("tryon_attempt")


class GuardedTask(Task[Any, Any]):
    """A task about jobs: outages are waited out, crashes retried, then the message parked.

    What the body publishes goes in one transaction at its end (`tasks/outbox.py`).
    """

    #: Whether parking the message fails its job (the first argument): for the steps
    #: that hold a slot (submit, track), so that the slot is freed. A copy or a callback
    #: that keeps crashing leaves its job as it is.
    fails_job: ClassVar[bool] = False
    #: Whether a message whose first argument is a text is parked as that text (a job
    #: message, which an operator can then publish again as it is).
    parks_raw_message: ClassVar[bool] = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        attempt = Attempt.taking_counters(args, kwargs)
        token = _attempt.set(attempt)
        try:
            with gathering(self.app):
                return super().__call__(*args, **kwargs)
        except Exception as exc:
            return self._after_failure(attempt, exc)
        finally:
            _attempt.reset(token)

    @property
    def attempt(self) -> Attempt:
        """The execution under way (its counters)."""
        return _attempt.get()

    @property
    def task_name(self) -> TaskName:
        return TaskName(self.name)

    def again(self, delay: float, **counters: int) -> None:
        """The same message (same task id: for submit it is the claim owner), later."""
        attempt = self.attempt
        kwargs = {**attempt.kwargs, "waits": attempt.waits, "crashes": attempt.crashes}
        kwargs.update({"outages": 0, **counters})
        send_later(
            self.app,
            self.task_name,
            args=attempt.args,
            kwargs=kwargs,
            delay=delay,
            task_id=str(self.request.id),
        )

    def follow(self, step: Step, job_id: str | None) -> None:
        """Do what the step asks: events, run again, track, hand out freed slots."""
        followups.send_follow_ups(self.app, step, job_id)
        if step.again_in is not None:
            self.again(step.again_in, waits=self.attempt.waits + 1)
        if step.dispatch:
            followups.dispatch_freed(self.app)

    def _after_failure(self, attempt: Attempt, exc: Exception) -> str:
        """Wait out an outage, retry a crash a few times, then park with why."""
        settings = settings_of(self.app)
        if is_outage(exc):
            wait = backoff_delay(
                attempt.outages, base=defaults.OUTAGE_BACKOFF_BASE, cap=settings.outage_retry_max
            )
            log.warning(
                "%s: the job store or broker does not answer (%s); trying again in %.0f s",
                self.name,
                type(exc).__name__,
                wait,
            )
            self._again_or_requeue(wait, outages=attempt.outages + 1)
            return "waiting for the store"
        reason = f"{self.name} raised {type(exc).__name__}: {redact(str(exc))[:300]}"
        if attempt.crashes < settings.task_failure_retries:
            tries = settings.task_failure_retries + 1
            log.warning("%s (try %d of %d)", reason, attempt.crashes + 1, tries)
            wait = backoff_delay(
                attempt.crashes,
                base=defaults.TASK_FAILURE_BACKOFF_BASE,
                cap=defaults.TASK_FAILURE_BACKOFF_CAP,
            )
            self._again_or_requeue(wait, crashes=attempt.crashes + 1)
            return "crashed: trying again"
        log.error("parking the message after %d tries: %s", attempt.crashes + 1, reason)
        self._park(attempt.args, reason)
        return "parked"

    def _again_or_requeue(self, delay: float, **counters: int) -> None:
        """Send the message again later; if even that fails, hand it back to the broker."""
        try:
            self.again(delay, **counters)
        except Exception as exc:
            # Neither acked nor lost: the broker delivers it again.
            raise Reject(f"could not reschedule: {type(exc).__name__}", requeue=True) from None

    def _park(self, args: tuple[Any, ...], reason: str) -> None:
        """The message to the dead-letter queue with the reason, and its job failed."""
        first = args[0] if args else None
        if self.parks_raw_message and isinstance(first, str):
            parked = first
        else:
            parked = json.dumps({"task": self.name, "args": list(args)})
        dead_letter(self.app, parked, reason, "application/json")
        if self.fails_job and isinstance(first, str):
            self._fail_job(first, reason)

    def _fail_job(self, job_id: str, reason: str) -> None:
        """End a job whose task keeps crashing, so that its slot is freed."""
        try:
            record = runtime_for(self.app).store.tracking.finish(
                job_id, JobState.FAILED, error_code=INTERNAL_ERROR, error_message=reason
            )
        except Exception:
            log.exception("could not record job %s as failed", job_id)
            return
        if record is not None:
            announce(self.app, [record])
            followups.dispatch_freed(self.app)


class TickTask(Task[Any, Any]):
    """A task the workers' timers send again anyway (dispatch, sweep, recover): an outage
    skips it, since the next tick does the same work; a crash is logged by Celery."""

    #: What a skipped run returns.
    skipped_result: ClassVar[Any] = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            with gathering(self.app):
                return super().__call__(*args, **kwargs)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning(
                "%s skipped: the job store does not answer (%s)", self.name, type(exc).__name__
            )
            return self.skipped_result
