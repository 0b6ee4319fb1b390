"""Backoff: grows exponentially, stays within its cap, is jittered, honours Retry-After."""

from __future__ import annotations

import random

import pytest

from kolors_tryon.config.backoff import backoff_delay


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 10, 50])
def test_delay_is_between_half_and_all_of_the_capped_exponential(attempt: int) -> None:
    """Equal jitter: half fixed, half random, never above the cap."""
    rng = random.Random(attempt)
    full = min(60.0, 2.0 * 2**attempt)
    for _ in range(200):
        delay = backoff_delay(attempt, base=2.0, cap=60.0, rng=rng)
        assert full / 2 <= delay <= full


def test_delays_are_spread_so_workers_do_not_return_together() -> None:
    """Two hundred draws of the same attempt are not all alike."""
    rng = random.Random(1)
    delays = {round(backoff_delay(3, base=1.0, cap=60.0, rng=rng), 3) for _ in range(200)}
    assert len(delays) > 100


@pytest.mark.parametrize(("retry_after", "expected_min"), [(0.1, 0.5), (30.0, 30.0)])
def test_retry_after_is_a_floor(retry_after: float, expected_min: float) -> None:
    """A longer Retry-After wins over the backoff; a shorter one does not shorten it."""
    delay = backoff_delay(0, base=1.0, cap=60.0, retry_after=retry_after, rng=random.Random(0))
    assert delay >= expected_min
    assert delay == max(retry_after, delay)
