"""The embedded default: no RabbitMQ, no database server: the same jobs, end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness import Deployment, FaultRun, clean_env, free_port, sample_b64, wait_until
from kolors_tryon import InvalidJob, JobPublisher, enqueue, get_job
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.store import JobState


def test_embedded_default_runs_jobs_end_to_end(
    embedded_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """SQLite broker and store: a job succeeds, a blank photo fails, a tiny one is rejected."""
    deployment = embedded_deployment
    settings = deployment.settings
    assert not settings.uses_rabbitmq
    assert settings.effective_database_url.startswith("sqlite")
    deployment.start_worker(concurrency=2)

    result = deployment.submit_sample("embedded-1", "--wait", "--json", "--timeout", "90")
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)
    assert record["state"] == "succeeded" and record["kling_task_id"]
    assert Path(record["images"][0]["stored"]).is_file()

    failing = enqueue(
        {
            "human_image": sample_b64("empty-backdrop.jpg"),
            "cloth_image": sample_b64("cloth-red.png"),
        },
        settings,
    )
    too_small = {"human_image": sample_b64("human.jpg"), "cloth_image": sample_b64("too-small.png")}
    with pytest.raises(InvalidJob):  # enqueue() checks first; the queue's worker checks too
        enqueue(too_small, settings)
    with JobPublisher(settings) as publisher:
        rejected = publisher.publish(too_small)
    duplicate = enqueue(
        {
            "human_image": sample_b64("empty-backdrop.jpg"),
            "cloth_image": sample_b64("cloth-red.png"),
        },
        settings,
    )
    assert duplicate == failing

    def ended(job_id: str) -> bool:
        found = get_job(job_id, settings)
        return found is not None and found.terminal

    wait_until(lambda: ended(failing) and ended(rejected), 90, what="both jobs to end")
    failed_record = get_job(failing, settings)
    rejected_record = get_job(rejected, settings)
    assert failed_record is not None and failed_record.state is JobState.FAILED
    assert rejected_record is not None and rejected_record.state is JobState.REJECTED
    stats = emulator.stats()
    assert stats["create_requests_by_external_id"] == {"embedded-1": 1, failing: 1}


def test_demo_runs_the_samples_in_sandbox_mode(tmp_path: Path) -> None:
    """`tryon demo` (make run) with no configuration: sandbox banner and every outcome."""
    import subprocess

    env = clean_env()
    env["TRYON_SANDBOX_EMULATOR_URL"] = f"http://127.0.0.1:{free_port()}"
    env["TRYON_TRACK_FIRST_DELAY"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "kolors_tryon.cli", "demo", "--timeout", "120"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "SANDBOX MODE" in output
    lines = result.stdout
    assert "sample-red-tee  " in lines
    for job_id, state in [
        ("sample-red-tee", "succeeded"),
        ("sample-blue-tee", "succeeded"),
        ("sample-no-person", "failed"),
        ("sample-too-small", "rejected"),
    ]:
        assert any(job_id in line and state in line for line in lines.splitlines()), (
            job_id,
            state,
            lines,
        )
    assert (tmp_path / "data" / "jobs.sqlite").is_file()


def test_embedded_worker_killed_loses_nothing_and_keeps_no_photos(
    embedded_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """kill -9 on the embedded broker: unacked messages come back; acked ones are deleted."""
    import sqlite3

    run = FaultRun(embedded_deployment, emulator).given(
        workers=("e0",),
        max_in_flight=4,
        env={"TRYON_EMBEDDED_VISIBILITY_TIMEOUT": "6", "TRYON_SUBMIT_LEASE_SECONDS": "6"},
        task_duration=0.5,
        slow_rate=0.5,
        slow_seconds=0.3,
        seed=3,
    )
    deployment = run.deployment
    worker = deployment.workers[0]

    run.publish(40, "embedded-kill")
    store = run.store
    for kills, finished_before in enumerate((8, 20), start=1):

        def progressed(enough: int = finished_before) -> bool:
            return store.jobs.count_by_state().get("succeeded", 0) >= enough

        wait_until(progressed, 90, what=f"{finished_before} jobs to succeed")
        worker.kill()  # mid-run: jobs are queued, being submitted and being tracked
        worker = deployment.start_worker(concurrency=2, name=f"e{kills}")
    run.wait_terminal(timeout=240)

    assert run.states() == {"succeeded": 40}
    run.assert_one_task_per_job()
    # Acked messages are gone from the broker file: no job message (with its photos) stays.
    broker = deployment.settings.data_dir / "broker.sqlite"
    with sqlite3.connect(broker) as db:
        payloads = [row[0] for row in db.execute("select payload from kombu_message")]
    photo = sample_b64("human.jpg")[2000:2100]
    assert not any(photo in payload for payload in payloads)
