"""Receivers that accept and never answer hold the delivery lane, never the pool.

Issue 16, point 6: two receivers hanging 60 s delayed an unrelated job's intake by 14 s,
because deliveries ran in the pool that intake, submits and callbacks need. Now each
worker delivers in a lane of its own (worker/delivery_lane.py). Real RabbitMQ,
PostgreSQL, a `tryon worker`, the emulator; each hanging receiver is a TCP fault proxy
that stalls both ways in front of a real receiver (TRYON_WEBHOOK_ALLOW_PRIVATE=true).
The lane's own guarantees are here too: a warm stop does not wait for hanging receivers
and loses no webhook, and the lane's broker connection comes back after a cut.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from harness import (
    Fault,
    FaultRun,
    TcpProxy,
    WebhookReceiver,
    figures,
    rabbitmq_url,
    sample_b64,
    wait_until,
)
from kolors_tryon import JobPublisher

HANGING = 20  # receivers that never answer
LANE = 4  # the worker's TRYON_WEBHOOK_CONCURRENCY: fewer threads than hanging receivers
POOL = 2  # the worker's pool processes: what the old design let two receivers take
PROBES = 5  # unrelated jobs timed each way (the medians are compared)
# With and without the hanging receivers, the unrelated job's time to `submitted` may
# differ by this factor, or by ABSOLUTE_SLACK seconds on a machine too loaded for a ratio
# of sub-second times to mean much. The old design failed both by a wide margin: its
# pool was held for the read timeout (60 s here).
RATIO = 3.0
ABSOLUTE_SLACK = 2.0
STALL = Fault(stall=True)


@pytest.fixture
def hanging() -> Iterator[tuple[WebhookReceiver, list[TcpProxy]]]:
    """A receiver behind HANGING proxies that stall: accepted, never answered."""
    receiver = WebhookReceiver().start()
    proxies = [TcpProxy("127.0.0.1", receiver.port) for _ in range(HANGING)]
    for proxy in proxies:
        proxy.set_faults(up=STALL, down=STALL)
    try:
        yield receiver, proxies
    finally:
        for proxy in proxies:
            proxy.close()
        receiver.stop()


def time_to_submitted(run: FaultRun, publisher: JobPublisher, job_id: str) -> tuple[float, float]:
    """Publish one job without a webhook; seconds until it is recorded, and submitted."""
    human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")
    started = time.monotonic()
    publisher.publish({"job_id": job_id, "human_image": human, "cloth_image": cloth})
    run.track(job_id)
    recorded = 0.0
    while time.monotonic() - started < 120:
        record = run.store.get(job_id)
        if record is not None and not recorded:
            recorded = time.monotonic() - started
        if record is not None and record.submitted_at is not None:
            return recorded, time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{job_id} was not submitted within 120 s")


def copies_made(run: FaultRun, job_ids: list[str]) -> bool:
    """Every image of these jobs has its copy in our storage."""
    records = [run.store.get(job_id) for job_id in job_ids]
    return all(r is not None and all(i.stored for i in r.images) for r in records)


def all_delivered(run: FaultRun, job_ids: list[str]) -> bool:
    """The store records every delivery of these jobs delivered (the receiver keeps a POST
    before it answers, the worker records the attempt after the answer)."""
    views = [view for job_id in job_ids for view in run.store.webhooks.of_job(job_id)]
    return bool(views) and all(view.status == "delivered" for view in views)


def publish_hooked(
    publisher: JobPublisher,
    job_ids: list[str],
    proxies: list[TcpProxy],
    human: str,
    cloth: str,
) -> None:
    """One job per proxy, each job's webhook going to its own (hanging) receiver."""
    for job_id, proxy in zip(job_ids, proxies, strict=True):
        publisher.publish(
            {
                "job_id": job_id,
                "human_image": human,
                "cloth_image": cloth,
                "callback_url": f"http://127.0.0.1:{proxy.port}/hook",
            }
        )


def test_hanging_receivers_do_not_delay_an_unrelated_job(
    fault_run: FaultRun, hanging: tuple[WebhookReceiver, list[TcpProxy]]
) -> None:
    """20 receivers that never answer: an unrelated job is recorded and submitted as fast."""
    receiver, proxies = hanging
    # Given: one worker (pool of 2), a lane of 4, a read timeout far beyond the test.
    run = fault_run.given(
        workers=1,
        concurrency=POOL,
        max_in_flight=5,
        env={
            "TRYON_WEBHOOK_ALLOW_PRIVATE": "true",
            "TRYON_WEBHOOK_CONCURRENCY": str(LANE),
            "TRYON_WEBHOOK_TIMEOUT": "60",
            "TRYON_WEBHOOK_SCHEDULE": "1,2,4,8,16,32",
        },
        task_duration=0.5,
    )
    human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")
    with JobPublisher(run.deployment.settings) as publisher:
        # Warmed up first (each pool process builds its runtime on its first task), so
        # that both measurements see a worker in its steady state.
        warm = [f"warm-{i}" for i in range(2 * POOL)]
        for job_id in warm:
            publisher.publish({"job_id": job_id, "human_image": human, "cloth_image": cloth})
        run.track(*warm)
        run.wait_terminal(timeout=120)
        wait_until(lambda: copies_made(run, warm), 60, what="the warm-up's result copies")
        # Without hanging receivers: the unrelated job's time to `submitted`.
        calm = [time_to_submitted(run, publisher, f"calm-{i}") for i in range(PROBES)]
        # When: 20 jobs whose webhooks go to the 20 hanging receivers, all ended.
        hooked = [f"hooked-{i:02d}" for i in range(HANGING)]
        publish_hooked(publisher, hooked, proxies, human, cloth)
        run.track(*hooked)
        run.wait_terminal(timeout=120)
        # The pool idle again (result copies made), as it was for the calm probes; the
        # lane full: every one of its threads waits on a receiver that never answers.
        wait_until(lambda: copies_made(run, hooked), 60, what="the result copies")
        wait_until(
            lambda: sum(p.connections for p in proxies) >= LANE,
            60,
            what=f"{LANE} deliveries hanging",
        )
        hung_at = time.monotonic()
        # Then: with every thread of the lane held, another job is as fast as before.
        busy = [time_to_submitted(run, publisher, f"busy-{i}") for i in range(PROBES)]
        held_for = time.monotonic() - hung_at
    # The lane held its bound all along, and nothing got through while it hung.
    assert sum(p.connections for p in proxies) == LANE
    assert receiver.posts() == []
    calm_submit = statistics.median(s for _, s in calm)
    busy_submit = statistics.median(s for _, s in busy)
    calm_record = statistics.median(r for r, _ in calm)
    busy_record = statistics.median(r for r, _ in busy)
    assert busy_submit <= max(RATIO * calm_submit, calm_submit + ABSOLUTE_SLACK), (calm, busy)
    assert busy_record <= max(RATIO * calm_record, calm_record + ABSOLUTE_SLACK), (calm, busy)

    # And once the receivers answer, every webhook arrives: none lost, each counted.
    for proxy in proxies:
        proxy.restore()
    records = run.wait_terminal(timeout=120)
    assert run.states() == {"succeeded": len(run.job_ids)}
    wait_until(
        lambda: len(receiver.delivered("/hook")) == HANGING, 90, what="every webhook delivered"
    )
    assert set(receiver.delivered("/hook")) == {(job_id, "succeeded") for job_id in hooked}
    wait_until(lambda: all_delivered(run, hooked), 30, what="every delivery recorded")
    views = [view for job_id in hooked for view in run.store.webhooks.of_job(job_id)]
    assert len(views) == HANGING
    attempts = sum(len(view.history) for view in views)
    # One recorded attempt per connection a receiver saw: each attempt counted once.
    assert attempts == sum(p.connections for p in proxies)
    assert len({post.webhook_id for post in receiver.posts("/hook")}) == HANGING
    run.assert_one_task_per_job()
    assert all(r.submitted_at for r in records.values())
    figures(
        "hanging-receivers",
        hanging_receivers=HANGING,
        lane=LANE,
        pool=POOL,
        seconds_hanging_while_measured=round(held_for, 1),
        to_recorded_without=[round(r, 3) for r, _ in calm],
        to_recorded_with=[round(r, 3) for r, _ in busy],
        to_submitted_without=[round(s, 3) for _, s in calm],
        to_submitted_with=[round(s, 3) for _, s in busy],
        median_ratio_submitted=round(busy_submit / calm_submit, 2),
        attempts=attempts,
        posts=len(receiver.posts("/hook")),
    )


def test_a_warm_stop_lets_hanging_attempts_go_and_they_are_delivered_later(
    fault_run: FaultRun, hanging: tuple[WebhookReceiver, list[TcpProxy]]
) -> None:
    """SIGTERM with attempts hanging: the worker stops in seconds; another delivers them once."""
    receiver, proxies = hanging
    proxies = proxies[:2]
    # Given: a read timeout of 30 s, so an attempt would hang far longer than the stop.
    run = fault_run.given(
        workers=("s1",),
        concurrency=POOL,
        max_in_flight=5,
        env={
            "TRYON_WEBHOOK_ALLOW_PRIVATE": "true",
            "TRYON_WEBHOOK_CONCURRENCY": "2",
            "TRYON_WEBHOOK_TIMEOUT": "30",
            "TRYON_WEBHOOK_SCHEDULE": "1,2,4,8,16,32",
        },
        task_duration=0.3,
    )
    human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")
    hooked = ["stop-0", "stop-1"]
    with JobPublisher(run.deployment.settings) as publisher:
        publish_hooked(publisher, hooked, proxies, human, cloth)
    run.track(*hooked)
    run.wait_terminal(timeout=120)
    wait_until(lambda: all(p.connections == 1 for p in proxies), 60, what="2 attempts hanging")
    # When: the worker is stopped as a deploy stops it, and the receivers come back.
    stopping = time.monotonic()
    run.deployment.workers[0].stop()
    stop_seconds = time.monotonic() - stopping
    for proxy in proxies:
        proxy.drop_connections()  # what the stopped worker sent never reaches the receiver
        proxy.restore()
    run.deployment.start_worker(concurrency=POOL, name="s2")
    # Then: the stop did not wait for the receivers (30 s), and each webhook came once,
    # after the abandoned attempt's fence: two POSTs of one delivery never overlap.
    assert stop_seconds < 20, stop_seconds
    log = run.deployment.workers[0].log_text()
    assert "2 attempt(s) still under way at stop" in log
    wait_until(lambda: len(receiver.delivered("/hook")) == 2, 150, what="both webhooks")
    assert set(receiver.delivered("/hook")) == {(job_id, "succeeded") for job_id in hooked}
    assert len(receiver.posts("/hook")) == 2
    wait_until(lambda: all_delivered(run, hooked), 30, what="both deliveries recorded")
    views = [view for job_id in hooked for view in run.store.webhooks.of_job(job_id)]
    assert [(v.status, len(v.history)) for v in views] == [("delivered", 1)] * 2
    figures(
        "hanging-receivers-warm-stop",
        read_timeout=30,
        stop_seconds=round(stop_seconds, 1),
        posts=len(receiver.posts("/hook")),
        recorded_attempts=sum(len(v.history) for v in views),
    )


def test_the_lane_reconnects_after_the_broker_went_away(fault_run: FaultRun) -> None:
    """The broker cut for 5 s: the lane connects again by itself and delivers what comes next."""
    broker = urlsplit(rabbitmq_url())
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    receiver = WebhookReceiver().start()
    try:
        # Given: a worker whose broker connections (the pool's and the lane's) pass the proxy.
        fault_run.deployment.env["TRYON_BROKER_URL"] = urlunsplit(
            broker._replace(netloc=f"{broker.username}:{broker.password}@127.0.0.1:{proxy.port}")
        )
        run = fault_run.given(
            workers=1, concurrency=POOL, env={"TRYON_WEBHOOK_ALLOW_PRIVATE": "true"}
        )
        job = {
            "human_image": sample_b64("human.jpg"),
            "cloth_image": sample_b64("cloth-red.png"),
            "callback_url": receiver.url("/hook"),
        }
        with JobPublisher(run.deployment.settings) as publisher:
            publisher.publish({**job, "job_id": "before-cut"})
        wait_until(lambda: len(receiver.delivered("/hook")) == 1, 60, what="the first webhook")
        # When: every connection to the broker is cut, and refused for 5 s.
        proxy.cut()
        time.sleep(5)
        proxy.restore()
        worker = run.deployment.workers[0]
        wait_until(
            lambda: "webhook deliveries: the broker connection failed" in worker.log_text(),
            30,
            what="the lane to notice",
        )
        with JobPublisher(run.deployment.settings) as publisher:
            publisher.publish({**job, "job_id": "after-cut"})
        # Then: the webhook of the job taken in after the cut arrives.
        wait_until(lambda: len(receiver.delivered("/hook")) == 2, 90, what="the second webhook")
        assert set(receiver.delivered("/hook")) == {
            ("before-cut", "succeeded"),
            ("after-cut", "succeeded"),
        }
        wait_until(lambda: all_delivered(run, ["before-cut", "after-cut"]), 30, what="records")
    finally:
        fault_run.deployment.stop_all()  # while the broker is still reachable through the proxy
        receiver.stop()
        proxy.close()
