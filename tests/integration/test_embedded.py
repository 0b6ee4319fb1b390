"""The embedded default: no RabbitMQ, no database server: the same jobs, end to end."""

from __future__ import annotations

import base64
import json
import socket
import sys
from pathlib import Path

from harness import Deployment, wait_until
from kolors_tryon import enqueue, get_job
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.store import JobState

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "kolors_tryon" / "samples"


def b64(name: str) -> str:
    return base64.b64encode((SAMPLES / name).read_bytes()).decode()


def test_embedded_default_runs_jobs_end_to_end(
    embedded_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """SQLite broker and store: a job succeeds, a blank photo fails, a tiny one is rejected."""
    deployment = embedded_deployment
    settings = deployment.settings
    assert not settings.uses_rabbitmq
    assert settings.effective_database_url.startswith("sqlite")
    deployment.start_worker(concurrency=2)

    result = deployment.tryon(
        "submit",
        "--human",
        str(SAMPLES / "human.jpg"),
        "--cloth",
        str(SAMPLES / "cloth-red.png"),
        "--job-id",
        "embedded-1",
        "--wait",
        "--json",
        "--timeout",
        "90",
    )
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)
    assert record["state"] == "succeeded" and record["kling_task_id"]
    assert Path(record["images"][0]["stored"]).is_file()

    failing = enqueue(
        {"human_image": b64("empty-backdrop.jpg"), "cloth_image": b64("cloth-red.png")}, settings
    )
    rejected = enqueue(
        {"human_image": b64("human.jpg"), "cloth_image": b64("too-small.png")}, settings
    )
    duplicate = enqueue(
        {"human_image": b64("empty-backdrop.jpg"), "cloth_image": b64("cloth-red.png")}, settings
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_runs_the_samples_in_sandbox_mode(tmp_path: Path) -> None:
    """`tryon demo` (make run) with no configuration: sandbox banner and every outcome."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYON_")}
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

    from harness import publish_jobs, wait_all_terminal

    deployment = embedded_deployment
    deployment.env.update(
        {
            "TRYON_EMBEDDED_VISIBILITY_TIMEOUT": "6",
            "TRYON_SUBMIT_LEASE_SECONDS": "6",
            "TRYON_MAX_IN_FLIGHT": "4",
        }
    )
    emulator.configure(task_duration=0.5, slow_rate=0.5, slow_seconds=0.3, seed=3)
    worker = deployment.start_worker(concurrency=2, name="e0")
    job_ids = publish_jobs(deployment.settings, 40, "embedded-kill")
    store = deployment.store()
    for kills, finished_before in enumerate((8, 20), start=1):

        def progressed(enough: int = finished_before) -> bool:
            return store.count_by_state().get("succeeded", 0) >= enough

        wait_until(progressed, 90, what=f"{finished_before} jobs to succeed")
        worker.kill()  # mid-run: jobs are queued, being submitted and being tracked
        worker = deployment.start_worker(concurrency=2, name=f"e{kills}")
    records = wait_all_terminal(store, job_ids, timeout=240)
    assert {r.state for r in records.values()} == {JobState.SUCCEEDED}
    stats = emulator.stats()
    assert stats["duplicates"] == 0
    assert {j: stats["tasks_by_external_id"].get(j, 0) for j in job_ids} == dict.fromkeys(
        job_ids, 1
    )
    # Acked messages are gone from the broker file: no job message (with its photos) stays.
    broker = deployment.settings.data_dir / "broker.sqlite"
    with sqlite3.connect(broker) as db:
        payloads = [row[0] for row in db.execute("select payload from kombu_message")]
    photo = b64("human.jpg")[2000:2100]
    assert not any(photo in payload for payload in payloads)
