"""The one backoff: bounded exponential, equal jitter, honouring Retry-After.

Every wait before a retry comes from `backoff_delay`: the Kling client's quick read
attempts, the create retries and 1303 waits of the pipeline, and the retries of a task
that raised. The numbers are in `config/defaults.py`, and the service's are settings.

The whole retry budget, written down:
- read-only calls (query, list): `http_attempts` quick tries inside one task run,
  waiting `backoff_delay(n, base=READ_BACKOFF_BASE, cap=MAX_RETRY_AFTER_IN_TASK)`, or a
  Retry-After up to that cap (a longer one goes up to the caller);
- a create answered 5000/5001/5002, 1302 or a network error: up to
  `submit_max_retries` runs of the submit task, waiting
  `min(retry_backoff_max, retry_backoff_base * 2**n)` (half of it jittered) between them,
  or Retry-After when that is longer; then the job fails with the last reason. A create
  that may have been made (a timeout, a dropped answer, a 5xxx) is never resent before a
  lookup by external_task_id, and that lookup's "not found" is trusted only
  `create_visibility_grace` seconds after the create may have been made; a job that may
  have a task is never failed for the budget;
- 1303 (the account's slots are busy): retried without spending that budget, waiting
  `busy_backoff_base * 2**n` capped at `BUSY_BACKOFF_CAP` (60 s), jittered;
- 1100/1101/1102, credential and token errors, a wrong base URL: no retries at all; the
  account is paused and one probe is sent every `account_probe_interval` seconds until
  one succeeds;
- the job store or the broker does not answer: waited out for as long as it lasts,
  from `OUTAGE_BACKOFF_BASE` doubling to `outage_retry_max`; nothing is counted;
- a task that raised anything else (a bug, a poison message): `task_failure_retries`
  retries waiting `TASK_FAILURE_BACKOFF_BASE * 2**n` capped at
  `TASK_FAILURE_BACKOFF_CAP`, then its message is parked in the dead-letter queue.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

# Beyond this exponent the delay is the cap anyway; bounding it keeps 2**n a small int.
_MAX_EXPONENT = 32


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before try number `attempt + 1` ("equal jitter").

    Half of the exponential delay is fixed and half random, so that waits still grow
    but workers that failed together do not come back together. A Retry-After from the
    server is a floor: the wait is never shorter than what the server asked for.

    Args:
        attempt: Tries already failed, minus one (0 for the first retry).
        base: The delay of the first retry before jitter.
        cap: The longest delay before jitter.
        retry_after: The server's Retry-After in seconds, if it sent one.
        rng: A seeded generator for reproducible waits (tests, an injected clock).
    """
    rng = rng or random.Random()
    exponent = min(max(attempt, 0), _MAX_EXPONENT)
    delay = float(min(cap, base * (2**exponent)))
    jittered = delay / 2 + float(rng.uniform(0, delay / 2))
    if retry_after is not None:
        return max(jittered, float(retry_after))
    return jittered


def scheduled_delay(
    failures: int,
    schedule: Sequence[float],
    *,
    jitter: float,
    retry_after: float | None = None,
    retry_after_cap: float,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next try of a fixed schedule (webhook deliveries), or None.

    The schedule lists when retries go, as offsets from the first try (Standard
    Webhooks' 5 s, 5 min, ... 24 h), so the wait after failure number `failures` is the
    gap to the next offset, spread by `jitter` either way. A Retry-After is a floor, as in
    `backoff_delay`, bounded by `retry_after_cap`.

    Args:
        failures: Tries that failed so far (1 after the first).
        schedule: Increasing offsets in seconds.
        jitter: Fraction of the gap added or taken at random (0.1: +-10 %).
        retry_after: The receiver's Retry-After in seconds, if it sent one.
        retry_after_cap: The longest Retry-After honoured.
        rng: A seeded generator for reproducible waits.

    Returns:
        The wait, or None when the schedule is spent (the delivery has failed).
    """
    if failures < 1 or failures > len(schedule):
        return None
    rng = rng or random.Random()
    previous = schedule[failures - 2] if failures >= 2 else 0.0
    gap = float(schedule[failures - 1] - previous)
    delay = gap * (1 + rng.uniform(-jitter, jitter))
    if retry_after is not None:
        delay = max(delay, min(float(retry_after), retry_after_cap))
    return delay
