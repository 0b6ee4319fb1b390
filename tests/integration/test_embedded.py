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
