"""The outbox: what a task run publishes goes in one AMQP transaction (tasks/outbox.py).

Against the real RabbitMQ; the connection cut is a TCP proxy in front of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kombu import Connection, Exchange, Queue

from harness import Deployment, TcpProxy, rabbitmq_url
from kolors_tryon.config.celery import topology_for
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.tasks.outbox import Publish, TxOutbox, gathering, send_task
from kolors_tryon.worker import create_app


@pytest.fixture
def queue() -> Iterator[Queue]:
    """A quorum queue of the test's own behind a topic exchange."""
    name = f"test.outbox.{uuid.uuid4().hex[:8]}"
    declared = Queue(
        name,
        exchange=Exchange(name, type="topic", durable=True),
        routing_key="k",
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )
    with Connection(rabbitmq_url()) as connection:
        declared(connection.default_channel).declare()
    yield declared
    with Connection(rabbitmq_url()) as connection:
        channel: Any = connection.channel()
        channel.queue_delete(name)
        channel.exchange_delete(name)


def numbered(queue: Queue, n: int) -> Publish:
    return lambda producer: producer.publish(
        {"n": n}, exchange=queue.exchange, routing_key="k", delivery_mode=2, retry=False
    )


def depth(name: str) -> int:
    with Connection(rabbitmq_url()) as connection:
        channel: Any = connection.channel()
        return int(channel.queue_declare(name, passive=True).message_count)


def drain(queue: Queue) -> list[int]:
    """Every message in the queue, in order (and acked)."""
    got: list[int] = []
    with Connection(rabbitmq_url()) as connection:
        bound = queue(connection.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            got.append(int(message.payload["n"]))
    return got


def test_a_set_is_published_whole_and_in_order(queue: Queue) -> None:
    outbox = TxOutbox(rabbitmq_url())
    try:
        outbox.send([numbered(queue, n) for n in range(30)])
        outbox.send([numbered(queue, n) for n in range(30, 35)])  # the same connection again
    finally:
        outbox.close()
    assert drain(queue) == list(range(35))


def test_a_connection_lost_before_a_flush_sends_the_whole_set_again(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker went away since the last flush: the set's transaction is void, and the
    whole set goes again on a new connection; nothing is missing, nothing doubled."""
    broker = urlsplit(rabbitmq_url())
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    outbox = TxOutbox(
        f"amqp://{broker.username}:{broker.password}@127.0.0.1:{proxy.port}/{broker.path[1:]}"
    )
    try:
        outbox.send([numbered(queue, 0)])  # its connection is open now
        proxy.drop_connections()
        outbox.send([numbered(queue, n) for n in range(1, 41)])
    finally:
        outbox.close()
        proxy.cut()
    assert "all again" in caplog.text  # the first try did fail
    assert drain(queue) == list(range(41))


def test_a_task_run_publishes_at_its_end_even_when_it_raises(
    rabbit_deployment: Deployment,
) -> None:
    """Nothing leaves before the run's body ends; what it gathered leaves even when a
    later line raises (an event of a state written must not be lost), then the error
    goes on."""
    settings = rabbit_deployment.settings
    app = create_app(settings)
    track = topology_for(settings).task_queue("track")
    with Connection(rabbitmq_url()) as connection:
        track(connection.default_channel).declare()
    with gathering(app):
        for n in range(3):
            send_task(app, TaskName.TRACK, args=[f"job-{n}", 0])
        assert depth(track.name) == 0
    assert depth(track.name) == 3
    with pytest.raises(RuntimeError, match="a later line"), gathering(app):
        send_task(app, TaskName.TRACK, args=["job-3", 0])
        raise RuntimeError("a later line failed")
    assert depth(track.name) == 4
