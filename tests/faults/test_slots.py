"""The account limit across workers: never exceeded, FIFO within a priority, no blocking."""

from __future__ import annotations

from harness import FaultRun, sample_b64, wait_until
from kolors_tryon import JobPublisher
from kolors_tryon.store import JobState


def test_waiting_jobs_keep_their_order_and_block_no_worker(fault_run: FaultRun) -> None:
    """One slot, one worker process: jobs go in order (priority first) and intake goes on."""
    run = fault_run.given(concurrency=1, max_in_flight=1, task_duration=1.5)

    ordinary = run.publish(6, "fifo")
    with JobPublisher(run.deployment.settings) as publisher:
        urgent = publisher.publish(
            {
                "job_id": "urgent",
                "priority": 9,
                "human_image": sample_b64("human.jpg"),
                "cloth_image": sample_b64("cloth-blue.png"),
            }
        )
        invalid = publisher.publish(
            {"job_id": "invalid", "human_image": "???", "cloth_image": sample_b64("cloth-blue.png")}
        )
    run.track(urgent)
    store = run.store

    # While five jobs wait for the single slot, the only worker process still takes new
    # messages: the invalid job is answered at once.
    def rejected() -> bool:
        record = store.get(invalid)
        return record is not None and record.state is JobState.REJECTED

    wait_until(rejected, 20, what="the invalid job to be rejected while others wait")
    assert store.jobs.count_by_state().get("queued", 0) >= 3

    records = run.wait_terminal(timeout=180)
    assert run.states() == {"succeeded": 7}
    order = sorted(records, key=lambda j: records[j].submitted_at or "")
    # The urgent job overtakes every ordinary job still waiting when it arrived; the
    # ordinary ones keep their publishing order.
    assert [j for j in order if j != urgent] == ordinary
    assert order.index(urgent) <= 2
    stats = run.emulator.stats()
    assert stats["peak_in_flight"] == 1
    assert stats["answers_by_code"].get("1303", 0) == 0


def test_two_workers_share_the_account_limit(fault_run: FaultRun) -> None:
    """Three workers, limit 4, 60 jobs sent twice: one create each, never over 4 at once."""
    run = fault_run.given(
        workers=("a", "b", "c"), max_in_flight=4, concurrency_limit=10, task_duration=0.8
    )

    job_ids = run.publish(60, "shared")
    # Every job a second time: two workers may take the two copies at once.
    assert run.publish(60, "shared") == job_ids
    run.wait_terminal(timeout=240)

    assert run.states() == {"succeeded": 60}
    stats = run.emulator.stats()
    assert stats["peak_in_flight"] == 4  # used fully, never exceeded
    assert stats["creates"] == 60 and stats["create_requests"] == 60
    assert stats["duplicates"] == 0
