"""`tryon cancel`, `tryon retry` and `tryon submit --deadline` as a user runs them, on
RabbitMQ and PostgreSQL."""

from __future__ import annotations

import json

from harness import Deployment, wait_until
from harness.samples import sample_b64
from kolors_tryon.store import NewJob


def _cancelled_jobs(deployment: Deployment, *job_ids: str) -> None:
    store = deployment.store()
    try:
        body = {"human_image": sample_b64("human.jpg"), "cloth_image": sample_b64("cloth-red.png")}
        store.intake.accept([NewJob(j, body=body, metadata={"n": j}) for j in job_ids])
        store.lifecycle.cancel(list(job_ids), reason="by hand")
    finally:
        store.dispose()


def test_cancel_names_each_outcome_and_exits_1_unless_all_were_cancelled(
    rabbit_deployment: Deployment,
) -> None:
    """A queued job is cancelled, an unknown one named: exit 1, one row each in --json."""
    store = rabbit_deployment.store()
    try:
        store.intake.accept([NewJob("cli-q", body={"human_image": "aGk=", "cloth_image": "aGk="})])
    finally:
        store.dispose()
    done = rabbit_deployment.tryon("cancel", "--json", "cli-q", "cli-nobody")
    assert done.returncode == 1, done.stderr
    rows = {row["job_id"]: row for row in json.loads(done.stdout)}
    assert rows["cli-q"]["outcome"] == "cancelled" and rows["cli-q"]["charged"] is False
    assert rows["cli-nobody"]["outcome"] == "not_found"
    again = rabbit_deployment.tryon("cancel", "cli-q")
    assert again.returncode == 1 and "already ended" in again.stdout


def test_a_bulk_retry_says_what_it_may_spend_and_waits_for_yes(
    rabbit_deployment: Deployment,
) -> None:
    """Two jobs: the estimate first and nothing sent; with --yes, both are retried, and a
    worker records the retries linked to their jobs."""
    _cancelled_jobs(rabbit_deployment, "bulk-a", "bulk-b")
    dry = rabbit_deployment.tryon("retry", "bulk-a", "bulk-b", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["sent"] is False and "at most 2 unit(s)" in plan["estimate"]
    assert "--yes" in dry.stderr
    done = rabbit_deployment.tryon("retry", "bulk-a", "bulk-b", "--yes")
    assert done.returncode == 0, done.stderr
    assert "bulk-a  retried as bulk-a-r1" in done.stdout

    worker = rabbit_deployment.start_worker(concurrency=1)
    store = rabbit_deployment.store()
    try:
        wait_until(
            lambda: all(
                (r := store.get(j)) is not None and r.terminal for j in ("bulk-a-r1", "bulk-b-r1")
            ),
            120,
            0.5,
            "the retries",
        )
        retry = store.get("bulk-b-r1")
        assert retry is not None and retry.retry_of == "bulk-b"
        assert retry.metadata == {"n": "bulk-b"} and retry.state == "succeeded"
        assert store.get("bulk-a").retried_by == ["bulk-a-r1"]  # type: ignore[union-attr]
    finally:
        store.dispose()
        worker.stop()


def test_submit_takes_a_deadline_and_refuses_a_bad_one(rabbit_deployment: Deployment) -> None:
    """`--deadline 3600` is published; `--deadline soon` is refused before anything is sent."""
    ok = rabbit_deployment.submit_sample("cli-deadline", "--deadline", "3600")
    assert ok.returncode == 0, ok.stderr
    bad = rabbit_deployment.submit_sample("cli-deadline-bad", "--deadline", "soon")
    assert bad.returncode == 2
    assert "deadline" in bad.stderr
