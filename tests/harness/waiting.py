"""Waiting in tests: polls with a deadline, and threads started together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kolors_tryon.store import JobRecord, JobStore


def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.2, what: str = ""
) -> None:
    """Poll `predicate` until it is true; fail the test with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")


def terminal_records(store: JobStore, job_ids: list[str]) -> dict[str, JobRecord]:
    """The records of those of `job_ids` that have reached a terminal state."""
    records = {job_id: store.get(job_id) for job_id in job_ids}
    return {k: v for k, v in records.items() if v is not None and v.terminal}


def wait_all_terminal(
    store: JobStore, job_ids: list[str], timeout: float, during: Callable[[], None] | None = None
) -> dict[str, JobRecord]:
    """Poll until every job is terminal; `during` runs between polls (fault injection)."""
    deadline = time.monotonic() + timeout
    pending = set(job_ids)
    while pending and time.monotonic() < deadline:
        if during is not None:
            during()
        done = terminal_records(store, sorted(pending))
        pending -= set(done)
        if pending:
            time.sleep(0.5)
    if pending:
        states = {j: (r.state if (r := store.get(j)) else None) for j in sorted(pending)[:20]}
        raise AssertionError(f"{len(pending)} job(s) not terminal: {states}")
    return {job_id: store.get(job_id) for job_id in job_ids}  # type: ignore[misc]


def concurrently(target: Callable[[], None], threads: int) -> None:
    """Run `target` in `threads` threads started together; return when all have ended."""
    started = [threading.Thread(target=target) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
