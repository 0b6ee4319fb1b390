"""Webhook delivery through a flaky receiver and a killed worker: nothing lost, all signed.

Real RabbitMQ, PostgreSQL, `tryon worker` processes, the emulator, and a real
`http.server` receiver on loopback (TRYON_WEBHOOK_ALLOW_PRIVATE=true).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from harness import FaultRun, WebhookReceiver, figures, sample_b64
from kolors_tryon import JobPublisher

# Retries 1 s ... 60 s after the first attempt: long enough to outlast 20 s of downtime.
SCHEDULE = "1,2,4,7,11,16,22,30,40,60"
SLOW = 3.0  # seconds the receiver takes in its slow phase (timeout: 8 s)


@pytest.mark.slow  # a minute or more: make test starts it first
def test_flaky_receiver_and_kill_9_lose_no_webhook(fault_run: FaultRun) -> None:
    """500 to half the attempts, down 20 s, then slow, a worker killed: every end arrives."""
    receiver = WebhookReceiver().start()
    started = time.monotonic()
    phase = {"name": "flaky"}

    def answer(_path: str, n: int) -> tuple[int, dict[str, str], float]:
        if phase["name"] == "slow":
            return 204, {}, SLOW
        return (500 if n % 2 == 0 else 204), {}, 0.0

    receiver.answer = answer
    # Given: two workers, a short schedule, a read timeout above the slow phase's delay.
    run = fault_run.given(
        workers=("h1", "h2"),
        max_in_flight=5,
        env={
            "TRYON_WEBHOOK_ALLOW_PRIVATE": "true",
            "TRYON_WEBHOOK_SCHEDULE": SCHEDULE,
            "TRYON_WEBHOOK_TIMEOUT": "8",
        },
        task_duration=0.5,
    )
    deployment = run.deployment
    hook = receiver.url("/hook?token=producer-secret")
    # When: 24 jobs to one callback URL (4 of them invalid, rejected at intake).
    human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")
    with JobPublisher(deployment.settings) as publisher:
        for i in range(24):
            publisher.publish(
                {
                    "job_id": f"hook-{i:04d}",
                    "human_image": human,
                    "cloth_image": cloth if i % 6 else "not-an-image",
                    "callback_url": hook,
                }
            )
    run.track(*(f"hook-{i:04d}" for i in range(24)))
    killed = False
    down_at = 0.0

    def faults() -> None:
        """kill -9 a worker at 4 s; the receiver flaky until 8 s, down 20 s, then slow."""
        nonlocal killed, down_at
        elapsed = time.monotonic() - started
        if not killed and elapsed > 4:
            deployment.workers[0].kill()
            deployment.start_worker(concurrency=2, name="h3")
            killed = True
        if phase["name"] == "flaky" and elapsed > 8:
            receiver.stop()
            phase["name"], down_at = "down", time.monotonic()
        if phase["name"] == "down" and time.monotonic() - down_at > 20:
            phase["name"] = "slow"
            receiver.start()

    records = run.wait_terminal(timeout=180, during=faults)
    deadline = time.monotonic() + 150
    while len(receiver.delivered("/hook")) < len(records) and time.monotonic() < deadline:
        faults()
        time.sleep(0.5)

    # Then: every job's end arrived at least once, each POST signed and verifiable.
    assert killed
    expected = {(job_id, str(r.state)) for job_id, r in records.items()}
    assert set(receiver.delivered("/hook")) == expected
    assert Counter(state for _, state in expected) == {"succeeded": 20, "rejected": 4}
    secret = deployment.tryon("webhooks", "secret").stdout.strip()
    posts = receiver.posts("/hook")
    assert all(post.verifies(secret) for post in posts)
    # The webhook-id of a (job, state) is the same on every attempt: one id per pair.
    ids_by_pair: dict[tuple[str, str], set[str]] = {}
    for post in posts:
        ids_by_pair.setdefault((post.record["job_id"], post.record["state"]), set()).add(
            post.webhook_id
        )
    assert all(len(ids) == 1 for ids in ids_by_pair.values())
    assert len({next(iter(ids)) for ids in ids_by_pair.values()}) == len(expected)
    # The store agrees: every delivery delivered, each attempt recorded.
    store = run.store
    views = [v for job_id in records for v in store.webhooks.of_job(job_id)]
    assert {v.status for v in views} == {"delivered"}
    attempts = sum(len(v.history) for v in views)
    assert attempts >= len(posts) - 4  # a POST cut short by the kill may go unrecorded
    log = "".join(w.log_text() for w in deployment.workers)
    assert "producer-secret" not in log and secret not in log
    assert not any(post.headers["webhook-signature"][3:30] in log for post in posts)
    figures(
        "webhooks-flaky",
        jobs=24,
        deliveries=len(views),
        posts=len(posts),
        recorded_attempts=attempts,
        answered_500=sum(1 for p in posts if p.answered == 500),
        retried_deliveries=sum(1 for v in views if len(v.history) > 1),
        seconds_from_downtime_to_all_delivered=round(time.monotonic() - down_at, 1),
    )
    receiver.stop()
