"""A worker's part of keeping delayed messages inside their own deployment (RabbitMQ).

Celery's own bootstep declares the vhost's delayed-delivery exchanges and binds each of
our queues to them by its routing key, which names the namespace (`config/celery.py`).
This step adds what Celery does not do:

- the discard queue (`celery_delayed_discard`), so that a delayed message whose
  deployment has gone is dropped instead of kept for ever by the delayed queues'
  at-least-once dead-lettering (which, enough such messages, stops releasing anyone's);
- the removal of the binding older releases made from `celery_delayed_delivery` to our
  task exchange with the key every namespace shared (`#.q.<queue>`): left in place, every
  neighbour still on that key would go on reaching our queues.

It runs each time the worker's consumer (re)connects; every operation is idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from kombu.transport.native_delayed_delivery import CELERY_DELAYED_DELIVERY_EXCHANGE

from kolors_tryon.config.celery import TASK_QUEUES, delayed_discard_queue, topology_for
from kolors_tryon.tasks.runtime import settings_of

log = logging.getLogger(__name__)


class DelayedIsolation(bootsteps.StartStopStep):
    """Declares the discard queue and removes the shared-key delayed bindings of old."""

    def include_if(self, parent: Any) -> bool:
        return bool(settings_of(parent.app).uses_rabbitmq)

    def start(self, parent: Any) -> None:
        topology = topology_for(settings_of(parent.app))
        with parent.app.connection_for_write() as connection:
            channel: Any = connection.channel()
            try:
                discard = delayed_discard_queue()
                discard.exchange(channel).declare()
                discard(channel).declare()
                exchange = topology.task_exchange(channel)
                exchange.declare()
                for short in dict.fromkeys(TASK_QUEUES.values()):
                    # No-op when the binding is absent (a namespace born on this release).
                    exchange.unbind_from(
                        CELERY_DELAYED_DELIVERY_EXCHANGE,
                        routing_key=f"#.{topology.legacy_routing_key(short)}",
                    )
            finally:
                channel.close()
        log.debug("delayed delivery kept to namespace %s", topology.namespace)
