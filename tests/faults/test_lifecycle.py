"""Cancels and deadlines against real workers, RabbitMQ, PostgreSQL and the emulator,
counted at the emulator: a cancelled job never reached the paid API.

Every test prints one line of figures (`FIGURES ...`) that the issue notes quote.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from harness import FaultRun, figures, wait_until
from harness.rabbit import EventRecorder
from harness.samples import sample_b64
from kolors_tryon import JobPublisher
from kolors_tryon.pipeline.lifecycle import cancel_jobs
from kolors_tryon.store.lifecycle import DEADLINE_CODE, CancelOutcome


@pytest.mark.slow
def test_200_jobs_cancelled_while_they_are_submitted(fault_run: FaultRun) -> None:
    """200 jobs cancelled in chunks while workers submit them: every job reported
    cancelled has zero create requests at the emulator, every other one exactly one task."""
    # Given: 8 slots, one-second tasks, and creates that are sometimes slow (the window
    # between a claim and its create is wide); two workers.
    run = fault_run.given(
        workers=("c0", "c1"),
        max_in_flight=8,
        concurrency_limit=8,
        task_duration=1.0,
        slow_rate=0.3,
        slow_seconds=0.2,
        seed=19,
    )
    events = EventRecorder(run.deployment.settings)
    job_ids = run.publish(200, "cancel")
    wait_until(
        lambda: run.emulator.stats()["create_requests"] >= 8, timeout=120, what="first creates"
    )

    # When: the first chunk by `tryon cancel` (as a person would), the rest by the same
    # store function the doors call, ten every 0.3 s, while the workers submit.
    reported: dict[str, CancelOutcome] = {}
    first = run.deployment.tryon("cancel", "--json", *job_ids[:20])
    assert first.returncode in (0, 1), first.stderr
    for row in json.loads(first.stdout):
        reported[row["job_id"]] = CancelOutcome(row["outcome"])
    for start in range(20, len(job_ids), 10):
        for answer in cancel_jobs(run.store, job_ids[start : start + 10]):
            reported[answer.job_id] = answer.outcome
        time.sleep(0.3)
    run.wait_terminal(timeout=300)

    # Then: cancelled jobs never reached the API; the others ran once each.
    stats = run.emulator.stats()
    requests = stats["create_requests_by_external_id"]
    tasks = stats["tasks_by_external_id"]
    cancelled = [j for j, o in reported.items() if o is CancelOutcome.CANCELLED]
    others = [j for j in job_ids if j not in set(cancelled)]
    assert cancelled, "the race never cancelled a job"
    assert others, "the race never let a job through"
    assert {j: requests.get(j, 0) for j in cancelled} == dict.fromkeys(cancelled, 0)
    assert {j: str(run.records[j].state) for j in cancelled} == dict.fromkeys(
        cancelled, "cancelled"
    )
    assert {j: tasks.get(j, 0) for j in others} == dict.fromkeys(others, 1)
    assert {str(run.records[j].state) for j in others} == {"succeeded"}
    assert stats["duplicates"] == 0
    # The jobs `tryon cancel` cancelled were announced by the workers (`tryon.cancelled`).
    by_cli = [j for j in job_ids[:20] if reported[j] is CancelOutcome.CANCELLED]
    _wait_announced(events, by_cli)
    figures(
        "cancel-race",
        jobs=200,
        reported_cancelled=len(cancelled),
        reported_at_kling=sum(1 for o in reported.values() if o is CancelOutcome.AT_KLING),
        reported_ended=sum(1 for o in reported.values() if o is CancelOutcome.ENDED),
        creates_of_cancelled=sum(requests.get(j, 0) for j in cancelled),
        succeeded=len(others),
        create_requests=stats["create_requests"],
        peak_in_flight=stats["peak_in_flight"],
    )


@pytest.mark.slow
def test_a_deadline_that_passed_while_every_worker_was_down(fault_run: FaultRun) -> None:
    """Jobs published with a deadline while no worker runs, workers started after it:
    each is cancelled with the reason and never created; jobs without one succeed."""
    # Given: no worker; 20 jobs with a deadline 3 s from now, 5 without.
    run = fault_run.given(workers=0, max_in_flight=5, concurrency_limit=5, task_duration=0.5)
    events = EventRecorder(run.deployment.settings)
    deadline = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")
    with JobPublisher(run.deployment.settings) as publisher:
        late = [
            publisher.publish(
                {"job_id": f"late-{i:02d}", "human_image": human, "cloth_image": cloth}
                | {"deadline": deadline}
            )
            for i in range(20)
        ]
    plain = run.publish(5, "plain")
    run.track(*late)

    # When: the deadline passes, then the workers start.
    time.sleep(4)
    run.given(workers=2, concurrency=2)
    run.wait_terminal(timeout=180)

    # Then: zero creates for the late jobs, cancelled with the reason; the rest ran.
    stats = run.emulator.stats()
    requests = stats["create_requests_by_external_id"]
    assert {j: requests.get(j, 0) for j in late} == dict.fromkeys(late, 0)
    for job_id in late:
        record = run.records[job_id]
        assert str(record.state) == "cancelled"
        assert record.error is not None and record.error.code == DEADLINE_CODE
    assert {str(run.records[j].state) for j in plain} == {"succeeded"}
    _wait_announced(events, late)
    figures(
        "deadline-workers-down",
        late_jobs=len(late),
        creates_of_late=sum(requests.get(j, 0) for j in late),
        cancelled=sum(1 for j in late if str(run.records[j].state) == "cancelled"),
        plain_succeeded=len(plain),
    )


def _wait_announced(events: EventRecorder, job_ids: list[str]) -> None:
    """Every job of `job_ids` got its `job.cancelled` event; then stop listening."""
    try:
        wait_until(
            lambda: all("job.cancelled" in events.for_job(j) for j in job_ids),
            timeout=60,
            what="job.cancelled events",
        )
    finally:
        events.stop()
