"""Deployments that share a RabbitMQ vhost do not receive each other's messages.

Celery's delayed-delivery exchanges (`celery_delayed_*`) are one set per vhost, shared
by every deployment on it; each namespace's task exchange is bound to them by routing
key. Against the real RabbitMQ, with two namespaces bound as their workers bind them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from harness import Deployment, delete_topology, rabbitmq_url, wait_until
from kolors_tryon.config import Settings
from kolors_tryon.config.celery import topology_for
from kolors_tryon.tasks.delays import send_later
from kolors_tryon.worker import create_app


@pytest.fixture
def neighbour(rabbit_deployment: Deployment) -> Iterator[Settings]:
    """The settings of a second deployment on the same vhost (its own namespace)."""
    other = rabbit_deployment.settings.model_copy(
        update={"namespace": f"nb{uuid.uuid4().hex[:10]}"}
    )
    yield other
    delete_topology(other)


def depth(name: str) -> int:
    with Connection(rabbitmq_url()) as connection:
        channel: Any = connection.channel()
        return int(channel.queue_declare(name, passive=True).message_count)


def test_a_delayed_message_reaches_only_its_own_deployment(
    rabbit_deployment: Deployment, neighbour: Settings
) -> None:
    ours = rabbit_deployment.settings
    queues = {}
    with Connection(rabbitmq_url()) as connection:
        declare_native_delayed_delivery_exchanges_and_queues(connection, "quorum")
        for settings in (ours, neighbour):
            track = topology_for(settings).task_queue("track")
            track(connection.default_channel).declare()
            bind_queue_to_native_delayed_delivery_exchange(connection, track)
            queues[settings.namespace] = track.name
    for n in range(3):
        send_later(create_app(ours), "tryon.track", args=[f"job-{n}", 0], delay=1)
    wait_until(lambda: depth(queues[ours.namespace]) == 3, 30, what="our delayed messages")
    time.sleep(1.0)  # anything that went astray has arrived by now as well
    assert depth(queues[neighbour.namespace]) == 0
