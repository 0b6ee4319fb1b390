"""Handing out account slots, the sweep that rescues stranded jobs, and the recovery a
worker runs at once when it (re)connects or stops."""

from __future__ import annotations

from kolors_tryon.config import defaults
from kolors_tryon.pipeline.holder import fresh_lease, new_owner
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import SweepResult
from kolors_tryon.pipeline.webhooks import rescue as rescue_webhooks
from kolors_tryon.store import Claim


def dispatch(rt: Runtime) -> list[Claim]:
    """Give free slots to queued jobs, shared among producers by weight (oldest first
    within each); the caller sends one submit per claim.

    With a pool, each account's free slots (store/accounts.py; producers' shares are not
    applied there yet); else the single account's.
    """
    if rt.pooled:
        return rt.store.pool.claim(
            rt.pool_slots(), lease_seconds=fresh_lease(rt.settings), new_owner=new_owner
        )
    return rt.store.claims.next(
        rt.settings.max_in_flight,
        lease_seconds=fresh_lease(rt.settings),
        new_owner=new_owner,
        weights=rt.settings.producer_weights,
        budgets=rt.settings.producer_budgets,
    )


def stale_after(rt: Runtime, *, overdue: bool = False) -> float:
    """How long a tracked job may go unpolled before its tracking is restarted.

    Longer than any wait a live chain schedules (three of its longest intervals, and a
    read timeout), so a live chain is not doubled; short enough that a lost one is
    noticed within minutes. An overdue job's chain waits `overdue_poll_interval`.
    """
    settings = rt.settings
    longest = settings.effective_poll_max
    if overdue:
        longest = max(longest, settings.overdue_poll_interval)
    return max(3 * longest, 10.0) + settings.http_read_timeout


def sweep(rt: Runtime) -> SweepResult:
    """Find jobs whose messages were lost and give them new ones; then dispatch.

    - a claim whose lease ran out (its worker died and no message came back, e.g. on an
      embedded broker) gets a new owner, who looks up the task before sending anything;
    - a tracked job nobody polled for a long while gets a new track message carrying the
      current poll number (if the old one turns up, only one of them proceeds);
    - a result copy due long ago and still missing gets a new copy message (a copy made
      twice overwrites itself).
    - a webhook delivery whose message was lost, or a terminal job whose delivery was
      never planned, gets a `tryon.webhook` message (each attempt is fenced);
    - a job not at Kling when its deadline passed is cancelled (even when no worker ran
      then: the claim and the intent refuse it from its deadline on).
    """
    if not rt.store.account.take_sweep(every=rt.settings.sweep_interval / 2):
        # Another worker's sweep has just run: only hand out free slots.
        return SweepResult(claims=tuple(dispatch(rt)))
    resubmit = []
    for job_id in rt.store.claims.expired():
        owner = new_owner()
        if rt.store.claims.take_over(job_id, owner, lease_seconds=fresh_lease(rt.settings)):
            resubmit.append(Claim(job_id, owner))
    retrack = rt.store.tracking.stale(
        older_than=stale_after(rt), overdue_older_than=stale_after(rt, overdue=True)
    )
    recopy = rt.store.copies.lost(lost_after=defaults.COPY_LOST_AFTER)
    cancelled = tuple(rt.store.lifecycle.expire_due())  # before the dispatch: their slots
    return SweepResult(
        resubmit=tuple(resubmit),
        retrack=tuple(retrack),
        cancelled=cancelled,
        claims=tuple(dispatch(rt)),
        recopy=tuple(recopy),
        webhooks=tuple(rescue_webhooks(rt)),
        budgets=tuple(rt.store.producers.take_unannounced()),
    )


def recover(rt: Runtime, released: str | None = None) -> SweepResult:
    """What keeps the pipeline moving, rebuilt from the store at once (not at the next
    sweep, not when a long lease runs out). A worker asks for it when its broker
    connection comes back, when it stops, and when its heartbeat sees a lapsed claim.

    - claims that ran out (their holder was killed), and every claim of the holder
      `released` (a worker that stopped, or whose broker connection dropped: the
      messages of its claims may never have reached the broker), get new owners, who
      look their jobs up before sending anything if an attempt may have been made;
    - tracked jobs not polled for longer than a live chain waits get a track message
      with their current poll number (a lost follow-up; a duplicate is fenced);
    - jobs whose deadline passed while they waited (every worker down) are cancelled;
    - free slots go to queued jobs (a dispatch whose message was lost).
    """
    settings = rt.settings
    resubmit = rt.store.claims.take_over_all(
        new_owner, lease_seconds=fresh_lease(settings), released=released
    )
    retrack = rt.store.tracking.stale(older_than=settings.effective_poll_max)
    cancelled = tuple(rt.store.lifecycle.expire_due())  # before the dispatch: their slots
    return SweepResult(
        resubmit=tuple(resubmit),
        retrack=tuple(retrack),
        cancelled=cancelled,
        claims=tuple(dispatch(rt)),
    )
