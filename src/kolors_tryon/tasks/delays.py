"""Sending a task message that runs later, without trusting anybody's clock.

Celery turns a `countdown` into an absolute ETA taken from the *sender's* clock and
written into the message; the worker that receives it holds the message in memory until
that ETA on *its* clock. On RabbitMQ the delay itself already happens in the broker
(native delayed delivery, quorum queues), so the ETA only adds harm: a sender whose clock
runs five minutes fast makes every other worker hold its messages five minutes longer.
Here the delay is encoded in the routing key for Celery's delayed-delivery exchanges
(kombu's own encoding) and no ETA is sent, so the message runs when it comes back out of
the broker, whatever the clocks say. The embedded broker (one machine, one clock) has no
delayed exchanges and uses the plain countdown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from kombu.transport.native_delayed_delivery import calculate_routing_key

from kolors_tryon.config.celery import route_for
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.tasks.outbox import send_task
from kolors_tryon.tasks.runtime import settings_of

# Celery declares these exchanges (celery_delayed_0 .. _27) at worker start; messages
# enter at the top level, and each level holds them for a power of two seconds.
DELAYED_ENTRY_EXCHANGE = "celery_delayed_27"


def whole_seconds(delay: float) -> int:
    """Whole seconds, at least one: native delayed delivery cannot do less."""
    return max(1, math.ceil(delay))


def send_later(
    app: Celery,
    name: TaskName,
    *,
    args: Sequence[Any],
    delay: float,
    kwargs: Mapping[str, Any] | None = None,
    task_id: str | None = None,
) -> None:
    """Publish task `name` to run `delay` seconds from now."""
    seconds = whole_seconds(delay)
    options: dict[str, Any] = {"args": list(args), "kwargs": dict(kwargs or {})}
    if task_id is not None:
        options["task_id"] = task_id
    settings = settings_of(app)
    if not settings.uses_rabbitmq:
        send_task(app, name, countdown=seconds, **options)
        return
    route = route_for(settings, name)
    send_task(
        app,
        name,
        exchange=DELAYED_ENTRY_EXCHANGE,
        routing_key=calculate_routing_key(seconds, route["routing_key"]),
        **options,
    )
