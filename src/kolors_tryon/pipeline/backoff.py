"""Bounded exponential backoff with jitter, honouring Retry-After.

The whole retry budget, written down (all numbers are settings):
- read-only calls (query, list): `http_attempts` quick tries inside one task run;
- a create answered 5000/5001/5002, 1302 or a network error: up to
  `submit_max_retries` runs of the submit task, waiting
  `min(retry_backoff_max, retry_backoff_base * 2**n)` (half of it jittered) between them,
  or Retry-After when that is longer; then the job fails with the last reason;
- 1303 (the account's slots are busy): retried without spending that budget, waiting
  `busy_backoff_base * 2**n` capped at 60 s, jittered;
- 1100/1101/1102 and credential errors: no retries at all; the account is paused and one
  probe is sent every `account_probe_interval` seconds until one succeeds.
"""

from __future__ import annotations

import random

BUSY_BACKOFF_CAP = 60.0


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
    but workers that failed together do not come back together.
    """
    rng = rng or random.Random()
    exponent = min(max(attempt, 0), 32)
    delay = float(min(cap, base * (2**exponent)))
    jittered = delay / 2 + float(rng.uniform(0, delay / 2))
    if retry_after is not None:
        return max(jittered, float(retry_after))
    return jittered
