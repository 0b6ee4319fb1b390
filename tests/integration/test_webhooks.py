"""Webhooks to producers, end to end: a real worker on RabbitMQ + PostgreSQL, the emulator,
and a real HTTP receiver on loopback (allowed by TRYON_WEBHOOK_ALLOW_PRIVATE)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import (
    Deployment,
    SettableClock,
    WebhookReceiver,
    concurrently,
    fresh_database,
    publish_raw,
    rabbit_stack,
    sample_b64,
    wait_until,
)
from harness.webhooks import at_its_end
from kolors_tryon import enqueue, get_job
from kolors_tryon.store import JobState, JobStore, NewJob
from kolors_tryon.store.records import unix_seconds
from kolors_tryon.store.webhooks import DeliveryBusy, DeliveryClaim, DeliveryStatus

Stack = tuple[Deployment, WebhookReceiver]

# Short schedule: retries 1 s and 2 s after the first attempt, then the delivery fails.
ENV = {"TRYON_WEBHOOK_ALLOW_PRIVATE": "true", "TRYON_WEBHOOK_SCHEDULE": "1,2"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One worker and one receiver shared by this module; each test uses its own paths."""
    receiver = WebhookReceiver().start()
    with rabbit_stack(tmp_path_factory.mktemp("hooks"), task_duration=0.3, env=ENV) as (dep, _):
        try:
            yield dep, receiver
        finally:
            receiver.stop()


def job(**extra: object) -> dict[str, object]:
    return {
        "job_id": f"wh-{uuid.uuid4().hex[:10]}",
        "human_image": sample_b64("human.jpg"),
        "cloth_image": sample_b64("cloth-red.png"),
        **extra,
    }


def deliveries(deployment: Deployment, job_id: str) -> list[dict[str, object]]:
    """`tryon webhooks JOB_ID --json`, as an operator reads it."""
    result = deployment.tryon("webhooks", job_id, "--json")
    assert result.returncode == 0, result.stderr
    data: list[dict[str, object]] = json.loads(result.stdout)
    return data


def settled(deployment: Deployment, job_id: str, count: int = 1) -> list[dict[str, object]]:
    """Wait until the job has `count` deliveries, none of them pending; return them."""
    found: list[dict[str, object]] = []

    def done() -> bool:
        nonlocal found
        found = deliveries(deployment, job_id)
        return len(found) >= count and all(d["status"] != "pending" for d in found)

    wait_until(done, 60, 0.5, f"the webhooks of {job_id} to settle")
    return found


def test_terminal_state_is_delivered_once_signed_with_the_shared_secret(stack: Stack) -> None:
    """By default one webhook, at the end; it verifies with `tryon webhooks secret`."""
    deployment, receiver = stack
    job_id = enqueue(job(callback_url=receiver.url("/ok-default")), deployment.settings)
    (delivery,) = settled(deployment, job_id)
    assert delivery["status"] == "delivered" and delivery["state"] == "succeeded"
    (post,) = receiver.posts("/ok-default")
    assert post.webhook_id == delivery["id"]
    assert at_its_end(post.record) == at_its_end(
        get_job(job_id, deployment.settings).to_json_dict()  # type: ignore[union-attr]
    )
    secrets = {deployment.tryon("webhooks", "secret").stdout.strip() for _ in range(2)}
    (secret,) = secrets  # the same in every process
    assert secret.startswith("whsec_") and post.verifies(secret)


def test_webhook_events_choose_the_states(stack: Stack) -> None:
    """webhook_events ["submitted", "succeeded"]: exactly those two states arrive."""
    deployment, receiver = stack
    job_id = enqueue(
        job(callback_url=receiver.url("/chosen"), webhook_events=["submitted", "succeeded"]),
        deployment.settings,
    )
    settled(deployment, job_id, count=2)
    assert sorted(receiver.delivered("/chosen")) == [(job_id, "submitted"), (job_id, "succeeded")]


def test_job_rejected_at_intake_gets_its_webhook(stack: Stack) -> None:
    """A job rejected for its photo still hears of it at its callback_url, with the reason."""
    deployment, receiver = stack
    bad = job(callback_url=receiver.url("/rejected"), cloth_image="not-an-image")
    # Published as any language would: enqueue() itself refuses it before publishing.
    publish_raw(deployment.settings, json.dumps(bad))
    job_id = str(bad["job_id"])
    (delivery,) = settled(deployment, job_id)
    assert delivery["state"] == "rejected" and delivery["status"] == "delivered"
    (post,) = receiver.posts("/rejected")
    assert post.record["state"] == "rejected"
    assert post.record["error"]["code"] == "invalid_job"
    assert "cloth_image" in post.record["error"]["message"]


def test_410_stops_deliveries_to_that_url(stack: Stack) -> None:
    """410 Gone: no retry, and a later job's delivery to that URL is not attempted."""
    deployment, receiver = stack
    receiver.answer = lambda path, _n: (410, {}, 0.0) if path == "/gone" else (204, {}, 0.0)
    first = enqueue(job(callback_url=receiver.url("/gone")), deployment.settings)
    (delivery,) = settled(deployment, first)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "gone",
        1,
        410,
    )
    second = enqueue(job(callback_url=receiver.url("/gone")), deployment.settings)
    (skipped,) = settled(deployment, second)
    assert skipped["status"] == "skipped" and skipped["attempts"] == 0
    assert "410" in str(skipped["last_error"])
    assert len(receiver.posts("/gone")) == 1


def test_redirect_is_a_failure_and_replay_delivers_it(stack: Stack) -> None:
    """3xx is not followed and fails each attempt; `replay` re-sends the failed delivery."""
    deployment, receiver = stack
    receiver.answer = lambda path, _n: (
        (302, {"Location": "/followed"}, 0.0) if path == "/moved" else (204, {}, 0.0)
    )
    job_id = enqueue(job(callback_url=receiver.url("/moved")), deployment.settings)
    (delivery,) = settled(deployment, job_id)
    assert delivery["status"] == "failed"
    history = delivery["history"]
    assert isinstance(history, list)
    assert [a["status_code"] for a in history] == [302, 302, 302]  # now, +1 s, +2 s
    assert receiver.posts("/followed") == []
    assert len({p.webhook_id for p in receiver.posts("/moved")}) == 1  # stable id
    table = deployment.tryon("webhooks", job_id)
    assert table.returncode == 0 and "failed" in table.stdout and "302" in table.stdout

    receiver.answer = lambda _path, _n: (204, {}, 0.0)
    replay = deployment.tryon("webhooks", "replay", str(delivery["id"]))
    assert replay.returncode == 0, replay.stderr
    (replayed,) = settled(deployment, job_id)
    assert replayed["status"] == "delivered"
    history = replayed["history"]
    assert isinstance(history, list) and [a["status_code"] for a in history][-1] == 204
    assert {p.webhook_id for p in receiver.posts("/moved")} == {delivery["id"]}
    again = deployment.tryon("webhooks", "replay", "--job", job_id)
    assert again.returncode == 1  # nothing failed any more


def test_secret_is_generated_once_even_when_workers_race(tmp_path: Path) -> None:
    """Eight threads asking for a missing secret at once all get the same one."""
    with fresh_database() as url:
        store = JobStore.from_url(url)
        store.create_schema()
        got: list[str] = []
        counter = iter(range(1000))

        def ask() -> None:
            got.append(store.secrets.get("race", lambda: f"value-{next(counter)}"))

        concurrently(ask, 8)
        store.dispose()
    assert len(got) == 8 and len(set(got)) == 1


def test_retry_after_on_503_is_honoured(stack: Stack) -> None:
    """503 with Retry-After: 3 delays the retry past the schedule's 1 s."""
    deployment, receiver = stack
    receiver.answer = lambda path, n: (
        (503, {"Retry-After": "3"}, 0.0) if path == "/busy" and not receiver.posts("/busy")
        else (204, {}, 0.0)
    )  # fmt: skip
    job_id = enqueue(job(callback_url=receiver.url("/busy")), deployment.settings)
    (delivery,) = settled(deployment, job_id)
    assert delivery["status"] == "delivered"
    history = delivery["history"]
    assert isinstance(history, list) and [a["status_code"] for a in history] == [503, 204]
    gap = unix_seconds(history[1]["at"]) - unix_seconds(history[0]["at"])  # type: ignore[operator]
    assert gap >= 2.9, gap


def test_attempts_are_fenced_and_the_sweep_finds_lost_and_unplanned_ones() -> None:
    """One claim at a time; an overdue delivery is lost, an ended job without one unplanned."""
    clock = SettableClock()
    with fresh_database() as url:
        store = JobStore.from_url(url, clock)
        store.create_schema()
        try:
            body = {"model_name": "m", "human_image": "h", "cloth_image": "c"}
            store.intake.accept([NewJob("j1", body=body, callback_url="https://hooks.invalid/a")])
            record = store.tracking.finish("j1", JobState.FAILED, error_code="x", error_message="y")
            assert record is not None
            # A job that asked for `submitted` only wants no webhook of its end.
            store.intake.accept(
                [
                    NewJob(
                        "j2",
                        body=body,
                        callback_url="https://h.invalid/",
                        webhook_events=["submitted"],
                    )
                ]
            )
            store.tracking.finish("j2", JobState.FAILED, error_code="x", error_message="y")
            # The worker died before planning: the sweep finds the ended job.
            assert [r.job_id for r in store.webhooks.missing(window=60)] == ["j1"]
            (planned,) = store.webhooks.plan([record])
            assert store.webhooks.plan([record]) == []  # the same change: one delivery
            assert store.webhooks.missing(window=60) == []
            claim = store.webhooks.claim(planned, hold=30)
            assert isinstance(claim, DeliveryClaim)
            busy = store.webhooks.claim(planned, hold=30)
            assert isinstance(busy, DeliveryBusy) and busy.wait == pytest.approx(30)
            assert store.webhooks.record_attempt(
                claim, status=DeliveryStatus.PENDING, status_code=500, duration_ms=5,
                error=None, retry_in=10,
            )  # fmt: skip
            assert store.webhooks.claim(planned, hold=30) is None  # not due: a stale message
            assert not store.webhooks.record_attempt(  # the claim is spent: no second outcome
                claim, status=DeliveryStatus.DELIVERED, status_code=200, duration_ms=1, error=None
            )
            assert store.webhooks.lost(older_than=20) == []
            clock.advance(31)  # 21 s overdue: its message is lost
            assert store.webhooks.lost(older_than=20) == [planned]
        finally:
            store.dispose()
