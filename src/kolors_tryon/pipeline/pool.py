"""The pool of Kling accounts as the pipeline sees it: which client a job's calls use,
and the slots each account offers to dispatch (docs/accounts.md).

Without `TRYON_KLING_ACCOUNTS` the pool is the single `default` account and the
pipeline runs exactly as before (`Runtime.kling`, `store.claims.next`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kolors_tryon.config import Settings
from kolors_tryon.config.accounts import KlingAccount, account_pool
from kolors_tryon.errors import TryonError
from kolors_tryon.jobs import JobRejected, ValidJob
from kolors_tryon.jobs.validation import Problem
from kolors_tryon.kling import KlingClient
from kolors_tryon.kling.auth import auth_from_account
from kolors_tryon.store.accounts import AccountSlots

if TYPE_CHECKING:
    from kolors_tryon.pipeline.runtime import Runtime

__all__ = ["AccountRemoved", "client_for", "is_pooled", "refuse_unrunnable", "slots_of"]

# Reason recorded on a job whose account left the configuration with its credentials.
ACCOUNT_REMOVED_CODE = "account_removed"


class AccountRemoved(TryonError, LookupError):
    """A job's account is no longer configured: its credentials are gone with it."""

    def __init__(self, account: str) -> None:
        super().__init__(
            f"account {account!r} is no longer in TRYON_KLING_ACCOUNTS: its task cannot "
            "be followed without its credentials (keep it with `retired: true` to drain it)"
        )
        self.account = account


def is_pooled(settings: Settings) -> bool:
    """Whether a pool is configured (else: the single account of today)."""
    return bool(settings.kling_accounts)


def slots_of(accounts: tuple[KlingAccount, ...]) -> tuple[AccountSlots, ...]:
    """What dispatch needs of each account."""
    return tuple(
        AccountSlots(
            name=a.name,
            max_in_flight=a.max_in_flight,
            weight=a.weight,
            models=a.models,
            daily_units=a.daily_units,
            retired=a.retired,
        )
        for a in accounts
    )


def client_for(settings: Settings, account: KlingAccount) -> KlingClient:
    """A client for one account of the pool, with the service's timeouts."""
    return KlingClient(
        account.base_url,
        auth_from_account(account, jwt_lifetime=settings.kling_jwt_lifetime),
        timeout=settings.http_timeout,
        read_attempts=settings.http_attempts,
    )


def pool_of(settings: Settings) -> tuple[KlingAccount, ...]:
    """The configured accounts (parsed again: Settings keeps the raw text)."""
    return account_pool(settings)


def refuse_unrunnable(rt: Runtime, job: ValidJob) -> ValidJob | JobRejected:
    """The job, or its rejection when no account of the pool can run it: an unknown
    or retired pinned account, or a model that no account (or not the pinned one) runs.

    Checked at intake so that such a job costs nothing and never waits for ever.
    """
    message = job.message
    if not rt.pooled and message.account is None:
        return job  # the single account runs every model: nothing to check
    accounts = [a for a in pool_of(rt.settings) if not a.retired]
    if message.account is not None:
        accounts = [a for a in accounts if a.name == message.account]
        if not accounts:
            problem = Problem(
                "account", "unknown_account", f"no active account {message.account!r}"
            )
            return _rejection(job, problem)
    model = str(message.model_name)
    if not any(a.runs(model) for a in accounts):
        where = f"account {message.account!r}" if message.account else "no account of the pool"
        problem = Problem("model_name", "no_account", f"{where} runs {model}")
        return _rejection(job, problem)
    return job


def _rejection(job: ValidJob, problem: Problem) -> JobRejected:
    return JobRejected(
        job.job_id,
        [problem],
        callback_url=job.message.callback_url,
        webhook_events=job.message.webhook_events,
    )
