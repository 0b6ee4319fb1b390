"""The job state machine: the one place that says which moves are allowed.

A state never moves backwards. Every write that changes a state goes through
`JobStore` as a conditional UPDATE whose WHERE clause is `allowed_sources(target)`,
so two workers racing on the same job cannot move it backwards either.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is. `rejected` and `cancelled` jobs never reached the paid API."""

    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    # Stopped by a person or by its deadline before any create could have reached Kling.
    CANCELLED = "cancelled"


_RANK: dict[JobState, int] = {
    JobState.QUEUED: 0,
    JobState.SUBMITTING: 1,
    JobState.SUBMITTED: 2,
    JobState.PROCESSING: 3,
    JobState.SUCCEEDED: 4,
    JobState.FAILED: 4,
    JobState.REJECTED: 4,
    JobState.CANCELLED: 4,
}

TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.REJECTED, JobState.CANCELLED}
)
# A job in one of these holds one of the account's try-on slots (or has claimed one).
IN_FLIGHT_STATES: frozenset[JobState] = frozenset(
    {JobState.SUBMITTING, JobState.SUBMITTED, JobState.PROCESSING}
)
# Kling reports progress only for tasks it knows; these are the states we poll.
TRACKED_STATES: frozenset[JobState] = frozenset({JobState.SUBMITTED, JobState.PROCESSING})


def can_move(source: JobState, target: JobState) -> bool:
    """True when `source -> target` is a forward move of the state machine."""
    if source in TERMINAL_STATES:
        return False
    if target in (JobState.REJECTED, JobState.CANCELLED):
        # Only the API's own verdict on a job we were sending can reject it after intake;
        # only a job that has no Kling task can be cancelled (store/lifecycle.py fences
        # `submitting` further: no create may be on its way).
        return source in (JobState.QUEUED, JobState.SUBMITTING)
    return _RANK[target] > _RANK[source]


def allowed_sources(target: JobState) -> frozenset[JobState]:
    """Every state from which `target` may be reached."""
    return frozenset(s for s in JobState if can_move(s, target))


def is_terminal(state: JobState | str) -> bool:
    return JobState(state) in TERMINAL_STATES
