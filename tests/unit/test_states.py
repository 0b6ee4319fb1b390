"""The job state machine: forward only, terminal states final."""

from __future__ import annotations

import itertools

import pytest

from kolors_tryon.store import JobState, can_move
from kolors_tryon.store.states import TERMINAL_STATES, allowed_sources

ORDER = ["queued", "submitting", "submitted", "processing"]


@pytest.mark.parametrize(("source", "target"), list(itertools.product(JobState, JobState)))
def test_moves_only_go_forward(source: JobState, target: JobState) -> None:
    """Every pair of states: allowed exactly when it is a forward move from a live state."""
    if source in TERMINAL_STATES or source == target:
        expected = False
    elif target in (JobState.REJECTED, JobState.CANCELLED):
        # Neither ever reached the API: only a job not yet at Kling can get there.
        expected = source in (JobState.QUEUED, JobState.SUBMITTING)
    elif target in TERMINAL_STATES:
        expected = True
    else:
        expected = ORDER.index(target) > ORDER.index(source)
    assert can_move(source, target) is expected


def test_allowed_sources_match_can_move() -> None:
    """allowed_sources(t) is exactly the set of states that can move to t."""
    for target in JobState:
        assert allowed_sources(target) == {s for s in JobState if can_move(s, target)}
