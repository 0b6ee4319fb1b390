"""End to end: three doors in, RabbitMQ, real worker processes, PostgreSQL, the emulator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import (
    SAMPLES,
    Deployment,
    EventRecorder,
    WebhookReceiver,
    dead_letters,
    publish_raw,
    rabbit_stack,
    sample_b64,
    wait_until,
)
from harness.webhooks import at_its_end
from kolors_tryon import JobPublisher, enqueue, get_job
from kolors_tryon.config import defaults
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.store import JobRecord, JobState

Stack = tuple[Deployment, EmulatorServer, EventRecorder]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One deployment on RabbitMQ + PostgreSQL with one worker, shared by this module."""
    # The test webhook receiver listens on loopback, which intake refuses by default.
    allow = {"TRYON_WEBHOOK_ALLOW_PRIVATE": "true"}
    with rabbit_stack(tmp_path_factory.mktemp("pipeline"), env=allow) as (deployment, server):
        events = EventRecorder(deployment.settings)
        try:
            yield deployment, server, events
        finally:
            events.stop()


def wait_terminal(deployment: Deployment, job_id: str, timeout: float = 60) -> JobRecord:
    def done() -> bool:
        record = get_job(job_id, deployment.settings)
        return record is not None and record.terminal

    wait_until(done, timeout, what=f"job {job_id} to end")
    record = get_job(job_id, deployment.settings)
    assert record is not None
    return record


def creates_for(server: EmulatorServer, job_id: str) -> int:
    return int(server.stats()["create_requests_by_external_id"].get(job_id, 0))


def good_job(**extra: object) -> dict[str, object]:
    job: dict[str, object] = {
        "human_image": sample_b64("human.jpg"),
        "cloth_image": sample_b64("cloth-red.png"),
    }
    job.update(extra)
    return job


def test_python_door_job_succeeds_with_images_and_events(stack: Stack) -> None:
    """enqueue() -> worker -> Kling -> succeeded, with task id, image copies and events."""
    deployment, server, events = stack
    job_id = enqueue(
        good_job(job_id=f"py-{uuid.uuid4().hex[:8]}", metadata={"sku": "1"}), deployment.settings
    )
    record = wait_terminal(deployment, job_id)
    assert record.state is JobState.SUCCEEDED, record
    assert record.kling_task_id
    assert record.metadata == {"sku": "1"}
    assert record.images and record.images[0].url.startswith(server.base_url)

    def copied() -> bool:  # copies are made after success, in the background
        found = get_job(job_id, deployment.settings)
        return found is not None and found.images[0].stored is not None

    wait_until(copied, 30, what="the result copy")
    record = get_job(job_id, deployment.settings) or record
    stored = record.images[0].stored
    assert stored is not None and Path(stored).read_bytes().startswith(b"\x89PNG")
    assert record.attempts == 1
    assert creates_for(server, job_id) == 1
    wait_until(lambda: "job.succeeded" in events.for_job(job_id), 10, what="succeeded event")
    keys = events.for_job(job_id)
    assert keys[0] == "job.queued"
    assert keys[1] == "job.submitting"
    assert "job.submitted" in keys


def test_cli_door_submit_wait_prints_the_result(stack: Stack) -> None:
    """`tryon submit --wait --json` with file paths ends with a succeeded record."""
    deployment, server, _ = stack
    job_id = f"cli-{uuid.uuid4().hex[:8]}"
    result = deployment.submit_sample(
        job_id, "--wait", "--json", "--timeout", "60", cloth="cloth-blue.png"
    )
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)
    assert record["job_id"] == job_id
    assert record["state"] == "succeeded"
    assert record["kling_task_id"]
    status = deployment.tryon("status", job_id, "--json")
    assert json.loads(status.stdout)["kling_task_id"] == record["kling_task_id"]
    assert creates_for(server, job_id) == 1


def test_any_language_door_plain_json_on_the_queue(stack: Stack) -> None:
    """A plain JSON message published without Celery headers is processed like any job."""
    deployment, server, events = stack
    job_id = f"raw-{uuid.uuid4().hex[:8]}"
    publish_raw(deployment.settings, json.dumps(good_job(job_id=job_id)))
    record = wait_terminal(deployment, job_id)
    assert record.state is JobState.SUCCEEDED
    assert creates_for(server, job_id) == 1
    wait_until(lambda: "job.succeeded" in events.for_job(job_id), 10, what="event")


def test_task_failed_by_kling_ends_failed_with_its_reason(stack: Stack) -> None:
    """A photo with nobody in it: Kling fails the task; the job is failed with that reason."""
    deployment, _, events = stack
    job_id = enqueue(good_job(human_image=sample_b64("empty-backdrop.jpg")), deployment.settings)
    record = wait_terminal(deployment, job_id)
    assert record.state is JobState.FAILED
    assert record.error is not None
    assert record.error.code == "kling_task_failed"
    assert "human" in record.error.message
    assert record.images == []
    wait_until(lambda: "job.failed" in events.for_job(job_id), 10, what="failed event")


def test_invalid_job_is_rejected_with_no_create(stack: Stack) -> None:
    """A too-small garment photo is rejected naming the field; the API never sees it."""
    deployment, server, events = stack
    before = server.stats()["create_requests"]
    # Published as any AMQP producer would: enqueue() refuses it before publishing.
    with JobPublisher(deployment.settings) as publisher:
        job_id = publisher.publish(good_job(cloth_image=sample_b64("too-small.png")))
    record = wait_terminal(deployment, job_id)
    assert record.state is JobState.REJECTED
    assert record.error is not None and "cloth_image" in record.error.message
    assert "300" in record.error.message
    assert server.stats()["create_requests"] == before
    wait_until(lambda: "job.rejected" in events.for_job(job_id), 10, what="rejected event")


def test_same_job_twice_is_one_job_and_one_create(stack: Stack) -> None:
    """Publishing identical content twice (no job_id) makes one job and one create call."""
    deployment, server, _ = stack
    job = good_job(metadata={"nonce": uuid.uuid4().hex})
    first = enqueue(job, deployment.settings)
    second = enqueue(job, deployment.settings)
    publish_raw(deployment.settings, json.dumps(job))
    assert first == second
    record = wait_terminal(deployment, first)
    assert record.state is JobState.SUCCEEDED
    assert creates_for(server, first) == 1
    store = deployment.store()
    assert [r.job_id for r in store.jobs.oldest_first(limit=10_000)].count(first) == 1


def test_unparseable_message_is_dead_lettered_and_worker_keeps_serving(stack: Stack) -> None:
    """Bytes that are not JSON land in tryon.dead with the reason; the next job still runs."""
    deployment, _, _ = stack
    publish_raw(deployment.settings, b"\xff\xfe not json at all", "application/octet-stream")
    publish_raw(deployment.settings, "[1, 2, 3]")
    parked: list[tuple[bytes, dict[str, object]]] = []

    def two_parked() -> bool:
        parked.extend(dead_letters(deployment.settings))
        return len(parked) >= 2

    wait_until(two_parked, 30, what="two dead letters")
    reasons = [str(headers.get("x-tryon-reason", "")) for _, headers in parked]
    assert any("UTF-8" in r for r in reasons), reasons
    assert any("object" in r for r in reasons), reasons
    job_id = enqueue(good_job(metadata={"after": "garbage"}), deployment.settings)
    assert wait_terminal(deployment, job_id).state is JobState.SUCCEEDED
    assert all(w.alive() for w in deployment.workers)


def test_batch_jsonl_and_csv_with_wait(stack: Stack, tmp_path: Path) -> None:
    """`tryon batch --wait` enqueues a JSON Lines and a CSV file and reports every job."""
    deployment, _, _ = stack
    tag = uuid.uuid4().hex[:6]
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text(
        json.dumps(
            {
                "job_id": f"b1-{tag}",
                "human_image": str(SAMPLES / "human.jpg"),
                "cloth_image": str(SAMPLES / "cloth-red.png"),
            }
        )
        + "\n"
        + json.dumps(
            {
                "job_id": f"b2-{tag}",
                "human_image": str(SAMPLES / "human.jpg"),
                "cloth_image": str(SAMPLES / "too-small.png"),
            }
        )
        + "\n"
    )
    refused = deployment.tryon("batch", str(jsonl), "--json")
    assert refused.returncode == 2  # an invalid line: nothing published
    assert "jobs.jsonl:2: cloth_image:" in refused.stderr
    result = deployment.tryon(
        "batch", str(jsonl), "--skip-invalid", "--wait", "--json", "--timeout", "90"
    )
    states = {r["job_id"]: r["state"] for r in json.loads(result.stdout)}
    assert states == {f"b1-{tag}": "succeeded"}
    assert "skipped jobs.jsonl:2: cloth_image:" in result.stderr
    assert result.returncode == 0, result.stderr

    csv_file = tmp_path / "jobs.csv"
    csv_file.write_text(
        "job_id,human_image,cloth_image,model_name,metadata\n"
        f"c1-{tag},{SAMPLES / 'human.jpg'},{SAMPLES / 'cloth-blue.png'},"
        'kolors-virtual-try-on-v1-5,"{""sku"": ""9""}"\n'
    )
    result = deployment.tryon("batch", str(csv_file), "--wait", "--json", "--timeout", "90")
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)
    assert record["state"] == "succeeded" and record["metadata"] == {"sku": "9"}
    listed = deployment.tryon("jobs", "--json")
    ids = {r["job_id"] for r in json.loads(listed.stdout)}
    assert {f"b1-{tag}", f"c1-{tag}"} <= ids and f"b2-{tag}" not in ids


def test_callback_url_is_not_forwarded_to_kling_our_webhook_arrives(stack: Stack) -> None:
    """A producer's callback_url never reaches Kling: our signed webhook of the record does."""
    deployment, server, _ = stack
    hook = WebhookReceiver().start()
    try:
        callbacks_before = server.stats()["callbacks_queued"]
        url = hook.url("/hook?token=abc")
        job_id = enqueue(
            good_job(callback_url=url, metadata={"cb": uuid.uuid4().hex}), deployment.settings
        )
        assert wait_terminal(deployment, job_id).state is JobState.SUCCEEDED
        wait_until(lambda: bool(hook.delivered()), 20, what="the webhook")
        # Kling was given no callback URL of the producer's: it called nobody back.
        assert server.stats()["callbacks_queued"] == callbacks_before
        (post,) = hook.posts()
        assert at_its_end(post.record) == at_its_end(
            get_job(job_id, deployment.settings).to_json_dict()  # type: ignore[union-attr]
        )
        assert "task_status" not in post.record
        secret = deployment.tryon("webhooks", "secret").stdout.strip()
        assert post.verifies(secret)
    finally:
        hook.stop()


def test_celery_result_backend_is_readable(stack: Stack) -> None:
    """Python consumers that use Celery read task results from the configured backend."""
    from kolors_tryon import create_app

    deployment, _, _ = stack
    app = create_app(deployment.settings)
    result = app.send_task(TaskName.DISPATCH)
    assert isinstance(result.get(timeout=30), int)
    assert app.AsyncResult(result.id).state == "SUCCESS"


def test_no_token_photo_or_signed_url_reaches_the_logs(stack: Stack) -> None:
    """The worker's log holds no bearer key, no Base64 photo data and no callback token."""
    deployment, _, _ = stack
    log = "".join(worker.log_text() for worker in deployment.workers)
    assert "received" in log  # the log is there and has content
    assert "sk-test-key" not in log
    assert sample_b64("human.jpg")[1000:1100] not in log
    assert sample_b64("cloth-red.png")[500:600] not in log
    assert "token=abc" not in log


def test_broker_holds_durable_quorum_queues_with_dead_lettering(stack: Stack) -> None:
    """What the worker declared on RabbitMQ: quorum queues, a DLX and a delivery limit."""
    import subprocess

    deployment, _, _ = stack
    namespace = deployment.settings.namespace
    listed = subprocess.run(
        [
            "rabbitmqctl",
            "list_queues",
            "name",
            "type",
            "durable",
            "arguments",
            "--formatter",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    queues = {q["name"]: q for q in json.loads(listed.stdout)}
    for name in (
        f"{namespace}.{short}" for short in ("jobs", "intake", "tasks", "track", "webhooks")
    ):
        queue = queues[name]
        arguments = {key: value for key, _kind, value in queue["arguments"]}
        assert queue["type"] == "quorum" and queue["durable"] is True
        assert arguments["x-dead-letter-exchange"] == f"{namespace}.dlx"
        assert arguments["x-delivery-limit"] == deployment.settings.delivery_limit


def test_a_burst_is_taken_in_in_runs_of_fifty(tmp_path: Path) -> None:
    """While the only pool process is busy, the intake consumer gathers on instead of
    sending a batch every 20 ms: 150 messages published at once are recorded in a few
    runs of up to 50 (jobs recorded by one run share its transaction's time)."""
    with rabbit_stack(tmp_path, concurrency=1) as (deployment, _server):
        store = deployment.store()
        try:
            body = good_job()
            with JobPublisher(deployment.settings) as publisher:  # one connection: a burst
                for i in range(150):
                    publisher.publish({**body, "job_id": f"burst-{i:03d}"})
            wait_until(lambda: sum(store.jobs.count_by_state().values()) >= 150, 120, what="intake")
            runs: dict[str, int] = {}
            for record in store.jobs.oldest_first(limit=200):
                runs[record.created_at] = runs.get(record.created_at, 0) + 1
        finally:
            store.dispose()
    assert sum(runs.values()) == 150
    assert max(runs.values()) == defaults.INTAKE_BATCH_MAX, sorted(runs.values())
    assert len(runs) <= 6, sorted(runs.values())  # 20 ms batches would be 8 or more
