"""Which worker holds a claim, so that a claim lives exactly as long as its holder.

A claim's owner is the id its submit runs under. In a worker, the owner starts with the
worker's holder id (`<holder>.<uuid>`): the worker's heartbeat renews the short lease of
every claim with its prefix (`worker/heartbeat.py`), a worker that stops hands its claims
back by that prefix, and a worker that was killed stops renewing, so its claims lapse
within `claim_lease_seconds` instead of `submit_lease_seconds`. The prefix lives in the
owner column itself: no new column, and the fence stays what it was (the owner).

The holder id is chosen in the worker's main process before its pool is forked, so that
every pool process claims under it. A process that is not a worker (`tryon web`, a test
calling the pipeline) has none: its claims get the long lease, as before.
"""

from __future__ import annotations

import uuid

from kolors_tryon.config import Settings

_holder: str | None = None


def become_holder() -> str:
    """Give this process (and the pool processes it forks from now on) a new holder id."""
    global _holder
    # 12 hex digits: with the uuid the owner stays within its 64-character column.
    _holder = f"h{uuid.uuid4().hex[:12]}"
    return _holder


def current_holder() -> str | None:
    """This worker's holder id; None outside a worker."""
    return _holder


def new_owner() -> str:
    """A fresh claim owner (a Celery task id), under this worker's holder id if any."""
    owner = str(uuid.uuid4())
    return f"{_holder}.{owner}" if _holder is not None else owner


def fresh_lease(settings: Settings) -> float:
    """The lease of a new claim: short under a heartbeat, else the long safety net."""
    return settings.claim_lease_seconds if _holder is not None else settings.submit_lease_seconds
