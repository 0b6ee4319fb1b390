"""What a pipeline step asks its Celery task to do next."""

from __future__ import annotations

from dataclasses import dataclass

from kolors_tryon.store import Claim, JobRecord
from kolors_tryon.store.producers import BudgetReached


@dataclass(frozen=True)
class Step:
    """The outcome of one step of one job.

    Attributes:
        changed: records whose state changed (one event each).
        again_in: run the same task again after this many seconds (same owner).
        track_in: start tracking the job after this many seconds.
        track_poll: the poll number the next track message must carry (its fence).
        dispatch: account slots may have been freed: hand them to queued jobs.
        dead_letter: the message cannot be recorded anywhere; park it with this reason.
        copy_results: the job just succeeded with images: send `tryon.copy_results`.
        overdue: records just flagged overdue (one `job.overdue` event, webhook and
            metric each; their state did not change).
        conflicts: records that a message with other content tried to take over (one
            `job.conflict` event each; their state did not change).
        note: a short human-readable summary for the log (never image data or tokens).
    """

    changed: tuple[JobRecord, ...] = ()
    conflicts: tuple[JobRecord, ...] = ()
    again_in: float | None = None
    track_in: float | None = None
    track_poll: int = 0
    dispatch: bool = False
    dead_letter: str | None = None
    copy_results: bool = False
    overdue: tuple[JobRecord, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class SweepResult:
    """Jobs the sweep found stranded, and the slots it handed out."""

    resubmit: tuple[Claim, ...] = ()
    retrack: tuple[tuple[str, int], ...] = ()
    claims: tuple[Claim, ...] = ()
    # Succeeded jobs whose copy is overdue (its message was lost): copy them again.
    recopy: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()  # deliveries to send a message for (lost, unplanned)
    # Waiting jobs whose deadline passed, just cancelled (an event and webhook each).
    cancelled: tuple[JobRecord, ...] = ()
    # Producers that reached their daily budget since the last sweep: announce each once.
    budgets: tuple[BudgetReached, ...] = ()
