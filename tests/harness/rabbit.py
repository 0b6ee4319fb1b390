"""RabbitMQ as a test sees it: plain publishing, dead letters, events, and clean-up.

Everything here talks to the broker directly with kombu, the way a producer or consumer
in any language would, never through the service's own Celery app.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kombu import Connection, Consumer, Exchange, Queue

from harness.env import RABBITMQ_URL_VARIABLE, rabbitmq_url
from kolors_tryon.config import Settings
from kolors_tryon.config.celery import topology_for


def delete_topology(settings: Settings) -> None:
    """Remove a test namespace's queues and exchanges from RabbitMQ."""
    topology = topology_for(settings)
    with Connection(rabbitmq_url()) as conn:
        channel: Any = conn.channel()
        # Every queue of the namespace: a leftover quorum queue keeps files open in
        # RabbitMQ, and a few hundred of them exhaust its file descriptors.
        for name in (
            topology.jobs_queue_name,
            *(queue.name for queue in topology.task_queues),
            f"{topology.namespace}.dead",
        ):
            try:
                channel.queue_delete(name)
            except Exception:
                channel = conn.channel()
        for exchange in (
            topology.events_exchange.name,
            topology.task_exchange.name,
            topology.dead_letter_exchange.name,
            # Remote control: kombu names the exchanges after Celery's control exchange.
            f"{topology.namespace}.control.pidbox",
            f"reply.{topology.namespace}.control.pidbox",
            f"{topology.namespace}.celeryev",
        ):
            try:
                channel.exchange_delete(exchange)
            except Exception:
                channel = conn.channel()


def jobs_waiting(settings: Settings) -> int:
    """Messages on the deployment's jobs queue (0 when nobody declared it): what a
    producer published that no worker has taken yet."""
    name = topology_for(settings).jobs_queue_name
    with Connection(rabbitmq_url()) as conn:
        channel: Any = conn.channel()
        try:
            _, messages, _ = channel.queue_declare(queue=name, passive=True)
        except Exception:
            return 0
        return int(messages)


def publish_raw(
    settings: Settings,
    body: bytes | str,
    content_type: str = "application/json",
) -> None:
    """Publish a message to `<ns>.jobs` the way a non-Python producer would: no Celery."""
    topology = topology_for(settings)
    with Connection(rabbitmq_url(), transport_options={"confirm_publish": True}) as conn:
        conn.Producer().publish(
            body,
            exchange="",
            routing_key=topology.jobs_queue_name,
            content_type=content_type,
            content_encoding="utf-8" if isinstance(body, str) else "binary",
            delivery_mode=2,
            declare=[topology.jobs_queue],
        )


def dead_letters(settings: Settings) -> list[tuple[bytes, dict[str, Any]]]:
    """Messages parked in `<ns>.dead`, with their headers (drained)."""
    topology = topology_for(settings)
    out: list[tuple[bytes, dict[str, Any]]] = []
    with Connection(rabbitmq_url()) as conn:
        queue = topology.dead_letter_queue(conn.channel())
        queue.declare()
        while (message := queue.get(no_ack=True)) is not None:
            body = message.body
            out.append(
                (
                    body if isinstance(body, bytes) else str(body).encode(),
                    dict(message.headers or {}),
                )
            )
    return out


class EventRecorder:
    """Subscribes to `<ns>.events` with a queue of its own and records every event."""

    def __init__(self, settings: Settings) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        topology = topology_for(settings)
        exchange = Exchange(topology.events_exchange.name, type="topic", durable=True)
        self._queue = Queue(
            f"{topology.namespace}.test-events-{uuid.uuid4().hex[:6]}",
            exchange,
            routing_key="job.#",
            auto_delete=True,
            exclusive=True,
        )
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise AssertionError("event recorder did not start")

    def _run(self) -> None:
        with (
            Connection(rabbitmq_url()) as conn,
            Consumer(conn, queues=[self._queue], callbacks=[self._on_event], accept=["json"]),
        ):
            self._ready.set()
            while not self._stop.is_set():
                try:
                    conn.drain_events(timeout=0.3)
                except TimeoutError:
                    continue
                except OSError:
                    if self._stop.is_set():
                        return
                    raise

    def _on_event(self, body: Any, message: Any) -> None:
        with self._lock:
            self.events.append((message.delivery_info["routing_key"], body))
        message.ack()

    def for_job(self, job_id: str) -> list[str]:
        """The routing keys of the events about `job_id`, in the order they came."""
        with self._lock:
            return [key for key, body in self.events if body.get("job_id") == job_id]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def rabbitmqctl(*args: str) -> str:
    """Run `rabbitmqctl` beside the test broker (what AMQP cannot ask: vhosts, and the
    messages a quorum queue keeps for dead-lettering, which no AMQP count includes)."""
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


@contextmanager
def own_vhost(label: str) -> Iterator[str]:
    """A RabbitMQ vhost of the test's own, deleted with all it holds; yields its name.

    For what the shared vhost cannot show: the count of the vhost-wide delayed queues.
    Inside the block `rabbitmq_url()` (so every deployment and helper) names this vhost.
    """
    vhost = f"tryon-test-{label}-{uuid.uuid4().hex[:8]}"
    before = os.environ.get(RABBITMQ_URL_VARIABLE)
    url = urlunsplit(urlsplit(rabbitmq_url())._replace(path=f"/{vhost}"))
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        os.environ[RABBITMQ_URL_VARIABLE] = url
        yield vhost
    finally:
        if before is None:
            os.environ.pop(RABBITMQ_URL_VARIABLE, None)
        else:
            os.environ[RABBITMQ_URL_VARIABLE] = before
        rabbitmqctl("delete_vhost", vhost)


def queue_messages(vhost: str, prefix: str) -> dict[str, int]:
    """Messages held by the vhost's queues named `prefix...` (kept dead letters included)."""
    rows = rabbitmqctl("list_queues", "-p", vhost, "name", "messages").splitlines()
    cells = [row.split("\t") for row in rows]
    return {c[0]: int(c[1] or 0) for c in cells if len(c) == 2 and c[0].startswith(prefix)}
