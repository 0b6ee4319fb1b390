"""Handing out account slots, and the sweep that rescues stranded jobs."""

from __future__ import annotations

import uuid

from kolors_tryon.config import defaults
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import SweepResult
from kolors_tryon.pipeline.webhooks import rescue as rescue_webhooks
from kolors_tryon.store import Claim


def dispatch(rt: Runtime) -> list[Claim]:
    """Give free slots to the oldest queued jobs; the caller sends one submit per claim."""
    return rt.store.claim_next(
        rt.settings.max_in_flight, lease_seconds=rt.settings.submit_lease_seconds
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
      never planned, gets a `tryon.webhook` message (each attempt is fenced).
    """
    if not rt.store.take_sweep(every=rt.settings.sweep_interval / 2):
        # Another worker's sweep has just run: only hand out free slots.
        return SweepResult(claims=tuple(dispatch(rt)))
    resubmit = []
    for job_id in rt.store.expired_claims():
        owner = str(uuid.uuid4())
        if rt.store.take_over(job_id, owner, lease_seconds=rt.settings.submit_lease_seconds):
            resubmit.append(Claim(job_id, owner))
    retrack = rt.store.stale_tracked(
        older_than=stale_after(rt), overdue_older_than=stale_after(rt, overdue=True)
    )
    recopy = rt.store.lost_copies(lost_after=defaults.COPY_LOST_AFTER)
    return SweepResult(
        resubmit=tuple(resubmit),
        retrack=tuple(retrack),
        claims=tuple(dispatch(rt)),
        recopy=tuple(recopy),
        webhooks=tuple(rescue_webhooks(rt)),
    )
