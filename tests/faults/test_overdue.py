"""A task that outlives TRYON_TRACK_DEADLINE: reported overdue, never thrown away."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import (
    EventRecorder,
    FaultRun,
    WebhookReceiver,
    figures,
    free_port,
    sample_b64,
    scrape,
    total,
    wait_until,
)
from kolors_tryon import JobPublisher
from kolors_tryon.store import JobState
from kolors_tryon.store.records import unix_seconds

TASK_SECONDS = 60.0
DEADLINE = 20.0
OVERDUE_POLL = 5.0


@pytest.mark.slow  # a minute or more: make test starts it first
def test_a_task_that_outlives_the_deadline_ends_succeeded_with_its_copies(
    fault_run: FaultRun,
) -> None:
    """A task of 60 s against a deadline of 20 s: reported overdue at 20 s (event, webhook,
    metric), still followed, and ended succeeded with its images copied."""
    receiver = WebhookReceiver().start()
    metrics_port = free_port()
    run = fault_run.given(
        workers=0,
        env={
            "TRYON_TRACK_DEADLINE": str(DEADLINE),
            "TRYON_OVERDUE_POLL_INTERVAL": str(OVERDUE_POLL),
            "TRYON_WEBHOOK_ALLOW_PRIVATE": "true",
        },
        task_duration=TASK_SECONDS,
    )
    run.deployment.start_worker(extra_env={"TRYON_METRICS_PORT": str(metrics_port)})
    events = EventRecorder(run.deployment.settings)
    try:
        with JobPublisher(run.deployment.settings) as publisher:
            job_id = publisher.publish(
                {
                    "job_id": "late-0000",
                    "human_image": sample_b64("human.jpg"),
                    "cloth_image": sample_b64("cloth-red.png"),
                    "callback_url": receiver.url(),
                }
            )
        run.track(job_id)
        record = run.wait_terminal(timeout=TASK_SECONDS + 90)[job_id]

        assert record.state is JobState.SUCCEEDED and record.images
        assert record.error is None and record.overdue_at is not None
        submitted = unix_seconds(record.submitted_at) or 0.0
        overdue_after = (unix_seconds(record.overdue_at) or 0.0) - submitted
        ended_after = (unix_seconds(record.finished_at) or 0.0) - submitted
        # Reported at the deadline: the first poll past it (polls are 1 s apart then).
        assert DEADLINE <= overdue_after <= DEADLINE + 5, overdue_after
        assert TASK_SECONDS <= ended_after <= TASK_SECONDS + OVERDUE_POLL + 10, ended_after

        # The copies are made after the job succeeded.
        def copied() -> bool:
            got = run.store.get(job_id)
            return got is not None and all(image.stored for image in got.images)

        wait_until(copied, 60, what="the result copies")
        copies = run.store.get(job_id)
        assert copies is not None
        assert all(Path(str(image.stored)).is_file() for image in copies.images)

        # One event each, in order; overdue is a flag on the record, not a state.
        wait_until(lambda: "job.succeeded" in events.for_job(job_id), 20, what="the events")
        assert events.for_job(job_id) == [
            "job.queued",
            "job.submitting",
            "job.submitted",
            "job.processing",
            "job.overdue",
            "job.succeeded",
        ]
        (overdue_event,) = [body for key, body in events.events if key == "job.overdue"]
        assert overdue_event["state"] == "processing"
        assert overdue_event["overdue_at"] == record.overdue_at

        # The producer's webhooks (default events): overdue, then succeeded, each once.
        wait_until(lambda: len(receiver.posts()) == 2, 30, what="two webhooks")
        overdue_hook, succeeded_hook = receiver.posts()
        assert overdue_hook.record["state"] == "processing"
        assert overdue_hook.record["overdue_at"] == record.overdue_at
        assert succeeded_hook.record["state"] == "succeeded"
        assert overdue_hook.webhook_id != succeeded_hook.webhook_id
        hook_after = overdue_hook.at - submitted

        metrics = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        assert total([metrics], "tryon_jobs_overdue_total") == 1

        stats = run.assert_one_task_per_job()
        figures(
            "overdue",
            task_seconds=TASK_SECONDS,
            deadline=DEADLINE,
            overdue_poll=OVERDUE_POLL,
            overdue_at_s=round(overdue_after, 1),
            overdue_webhook_at_s=round(hook_after, 1),
            succeeded_at_s=round(ended_after, 1),
            queries=stats["queries"],
            creates=stats["creates"],
        )
    finally:
        events.stop()
        receiver.stop()
