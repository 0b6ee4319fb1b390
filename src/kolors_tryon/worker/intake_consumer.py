"""The door for any language: a consumer of plain JSON messages on `<ns>.jobs`.

Messages there carry no Celery headers. The consumer runs in the worker's main process,
so it does no slow work: it hands each message to the `tryon.intake` task (confirmed
publish), then acks it. Validation, database writes and URL preflight happen in the pool.
A message that is not even UTF-8 text is dead-lettered with the reason.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from kombu import Consumer, Message

from kolors_tryon.config.celery import topology_for
from kolors_tryon.config.defaults import INTAKE_PREFETCH
from kolors_tryon.tasks.messaging import dead_letter
from kolors_tryon.tasks.runtime import settings_of

log = logging.getLogger(__name__)


class IntakeConsumer(bootsteps.ConsumerStep):
    """Consumes `<ns>.jobs` and turns each message into a `tryon.intake` task."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self.app = parent.app
        super().__init__(parent, **kwargs)

    def get_consumers(self, channel: Any) -> list[Consumer]:
        settings = settings_of(self.app)
        topology = topology_for(settings)
        if settings.uses_rabbitmq:
            # The queues name `<ns>.dlx` as their dead-letter exchange, but RabbitMQ drops
            # a dead letter whose exchange does not exist: declare it (and `<ns>.dead`,
            # bound to it) before the first message can reach its delivery limit.
            topology.dead_letter_queue(channel).declare()
        return [
            Consumer(
                channel,
                queues=[topology.jobs_queue],
                on_message=self.on_message,
                prefetch_count=INTAKE_PREFETCH,
                no_ack=False,
            )
        ]

    def on_message(self, message: Message) -> None:
        body: bytes | str = message.body or b""
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
        except UnicodeDecodeError:
            dead_letter(self.app, body, "message body is not UTF-8 JSON text", message.content_type)
            message.ack()
            return
        self.app.send_task("tryon.intake", args=[text])
        message.ack()
