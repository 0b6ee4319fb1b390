"""The delivery lane: webhooks consumed beside the pool, on RabbitMQ and on the embedded broker.

Real `tryon worker` processes, a real receiver on loopback, RabbitMQ inspected with
plain kombu as an operator's tool would; the hanging receivers of issue 16 are in
tests/faults/test_hanging_receivers.py.
"""

from __future__ import annotations

import json
from typing import Any

from kombu import Connection

from harness import (
    Deployment,
    WebhookReceiver,
    dead_letters,
    rabbitmq_url,
    sample_b64,
    wait_until,
)
from kolors_tryon import enqueue
from kolors_tryon.config.celery import topology_for
from kolors_tryon.worker.delivery_lane import LANE_QUEUE

HOOK_ENV = {"TRYON_WEBHOOK_ALLOW_PRIVATE": "true", "TRYON_WEBHOOK_SCHEDULE": "1,2,4,8"}


def _job(callback_url: str) -> dict[str, Any]:
    return {
        "human_image": sample_b64("human.jpg"),
        "cloth_image": sample_b64("cloth-red.png"),
        "callback_url": callback_url,
    }


def _consumers(deployment: Deployment, short: str) -> int:
    """How many consumers RabbitMQ counts on one of the deployment's task queues."""
    name = topology_for(deployment.settings).task_queue_name(short)
    with Connection(rabbitmq_url()) as conn:
        channel: Any = conn.channel()
        _, _, consumers = channel.queue_declare(name, passive=True)
        return int(consumers)


def test_the_lane_consumes_webhooks_and_the_pool_does_not(rabbit_deployment: Deployment) -> None:
    """Each worker has one consumer on the webhooks queue (its lane's), one on the others."""
    deployment = rabbit_deployment
    deployment.env.update(HOOK_ENV)
    worker = deployment.start_worker(concurrency=2)
    deployment.start_worker(concurrency=2)
    wait_until(lambda: _consumers(deployment, "tasks") == 2, 30, what="both workers consuming")
    assert _consumers(deployment, LANE_QUEUE) == 2
    assert _consumers(deployment, "intake") == 2
    assert "webhook deliveries: 8 at a time" in worker.log_text()


def test_a_message_that_is_not_a_delivery_is_parked_and_the_lane_goes_on(
    rabbit_deployment: Deployment,
) -> None:
    """Another task's message on the webhooks queue goes to `<ns>.dead`; webhooks still arrive."""
    deployment = rabbit_deployment
    deployment.env.update(HOOK_ENV)
    deployment.start_worker(concurrency=2)
    topology = topology_for(deployment.settings)
    body = json.dumps([["msg_x"], {}, {"callbacks": None, "errbacks": None, "chain": None}])
    with Connection(rabbitmq_url(), transport_options={"confirm_publish": True}) as conn:
        conn.Producer().publish(
            body,
            exchange=topology.task_exchange,
            routing_key=topology.routing_key(LANE_QUEUE),
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": "tryon.not_a_webhook", "id": "stray-1"},
            delivery_mode=2,
        )
    receiver = WebhookReceiver().start()
    try:
        job_id = enqueue(_job(receiver.url("/hook")), deployment.settings)
        wait_until(lambda: bool(receiver.delivered("/hook")), 60, what="the webhook")
        assert set(receiver.delivered("/hook")) == {(job_id, "succeeded")}
    finally:
        receiver.stop()
    parked: list[tuple[bytes, dict[str, Any]]] = []

    def parked_some() -> bool:
        parked.extend(dead_letters(deployment.settings))
        return bool(parked)

    wait_until(parked_some, 30, what="the stray message in the dead-letter queue")
    assert [headers.get("task") for _, headers in parked] == ["tryon.not_a_webhook"]
    log = "".join(w.log_text() for w in deployment.workers)
    assert "parked a message that is not one: task 'tryon.not_a_webhook'" in log


def test_embedded_broker_retries_a_webhook_at_its_countdown(
    embedded_deployment: Deployment,
) -> None:
    """On the embedded broker the lane holds a retry until its countdown: it comes, once."""
    deployment = embedded_deployment
    deployment.env.update(HOOK_ENV)
    worker = deployment.start_worker(concurrency=2)
    receiver = WebhookReceiver().start()
    receiver.answer = lambda _path, n: (503 if n == 0 else 204, {}, 0.0)
    try:
        job_id = enqueue(_job(receiver.url("/hook")), deployment.settings)
        wait_until(lambda: bool(receiver.delivered("/hook")), 90, what="the retried webhook")
        posts = receiver.posts("/hook")
    finally:
        receiver.stop()
    assert [post.answered for post in posts] == [503, 204]
    # The schedule's first retry is 1 s after the first attempt (jitter 10 %).
    assert posts[1].at - posts[0].at >= 0.9 - 0.05
    assert posts[0].webhook_id == posts[1].webhook_id
    store = deployment.store()
    try:
        (view,) = store.webhooks.of_job(job_id)
        assert view.status == "delivered" and len(view.history) == 2
    finally:
        store.dispose()
    assert "webhook deliveries: 8 at a time" in worker.log_text()
