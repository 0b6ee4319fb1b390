"""The door for any language: a consumer of plain JSON messages on `<ns>.jobs`.

Messages there carry no Celery headers. The consumer runs in the worker's main process,
so it does no slow work: it hands messages to the `tryon.intake` task (confirmed
publish), then acks them. Validation, database writes and URL preflight happen in the
pool. A message that is not even UTF-8 text is dead-lettered with the reason.

On RabbitMQ the messages that arrive together (up to `INTAKE_BATCH_MAX`, gathered for at
most `INTAKE_BATCH_WAIT` seconds) go in one `tryon.intake` message: one task run then
records them all, hands their slots out in one claim and sends their creates. None is
acked before that message is confirmed, so a worker
that dies meanwhile loses nothing: RabbitMQ delivers them again (intake takes a job id
once).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps
from celery.worker.state import reserved_requests
from kombu import Consumer, Message

from kolors_tryon.config.celery import topology_for
from kolors_tryon.config.defaults import (
    INTAKE_BATCH_MAX,
    INTAKE_BATCH_WAIT,
    INTAKE_BUSY_WAIT,
    INTAKE_PREFETCH,
)
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.store import open_store
from kolors_tryon.store.secrets import producer_secret
from kolors_tryon.tasks.messaging import dead_letter
from kolors_tryon.tasks.runtime import settings_of
from kolors_tryon.worker.producer_identity import producer_of

log = logging.getLogger(__name__)


class IntakeConsumer(bootsteps.ConsumerStep):
    """Consumes `<ns>.jobs` and turns each message into a `tryon.intake` task."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self.app = parent.app
        # The worker's event loop (RabbitMQ): it runs the batch's flush. Without one
        # (the embedded broker), each message goes on its own at once.
        self.hub = parent.hub if settings_of(self.app).uses_rabbitmq else None
        controller = getattr(parent, "controller", None)
        self.pool_size = max(1, int(getattr(controller, "concurrency", 1) or 1))
        self.pending: list[tuple[str, Message, str]] = []
        self._secret: str | None = None
        self.first_at = 0.0  # when the first pending message arrived (steady clock)
        self.armed = False  # a flush timer is set
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
        producer = producer_of(
            message.properties,
            message.headers,
            body if isinstance(body, bytes) else text.encode(),
            secret=self._producer_secret,
            default=settings_of(self.app).amqp_producer,
        )
        if self.hub is None:
            self.app.send_task(TaskName.INTAKE, args=[text], kwargs={"producer": producer})
            message.ack()
            return
        self.pending.append((text, message, producer))
        if len(self.pending) == 1:
            self.first_at = time.monotonic()
            self._arm(INTAKE_BATCH_WAIT)
        if len(self.pending) >= INTAKE_BATCH_MAX:
            self.flush()

    def _producer_secret(self) -> str:
        """The store's producer signing secret, read once (it never changes)."""
        if self._secret is None:
            store = open_store(settings_of(self.app))
            try:
                self._secret = producer_secret(store.secrets)
            finally:
                store.dispose()
        return self._secret

    def _arm(self, delay: float) -> None:
        if not self.armed and self.hub is not None:
            self.armed = True
            self.hub.call_later(delay, self._due)

    def _due(self) -> None:
        """The timer: flush the batch once it has gathered long enough.

        While every pool process of this worker is busy, a batch sent now would only
        wait in the queue: it gathers on (up to `INTAKE_BATCH_MAX`, for at most
        `INTAKE_BUSY_WAIT`), so that a burst goes in fewer, larger runs; the moment a
        process is free, the batch goes (within `INTAKE_BATCH_WAIT`).
        """
        self.armed = False
        if not self.pending:
            return
        waited = time.monotonic() - self.first_at
        if waited < INTAKE_BATCH_WAIT:  # a younger batch (the last one filled up)
            self._arm(INTAKE_BATCH_WAIT - waited)
        elif waited < INTAKE_BUSY_WAIT and len(reserved_requests) >= self.pool_size:
            self._arm(INTAKE_BATCH_WAIT)
        else:
            self.flush()

    def flush(self) -> None:
        """Hand the gathered messages to one `tryon.intake` task per producer, then ack them."""
        batch, self.pending = self.pending, []
        by_producer: dict[str, list[tuple[str, Message, str]]] = {}
        for item in batch:
            by_producer.setdefault(item[2], []).append(item)
        for producer, items in by_producer.items():
            try:
                self.app.send_task(
                    TaskName.INTAKE,
                    args=[[text for text, _, _ in items]],
                    kwargs={"producer": producer},
                )
            except Exception:
                log.exception("could not hand %d job message(s) to intake; returned", len(items))
                for _, message, _ in items:
                    _settle(message.requeue)
                continue
            for _, message, _ in items:
                _settle(message.ack)


def _settle(settle: Any) -> None:
    """Ack or requeue; on a channel that has closed meanwhile RabbitMQ has already put the
    message back (it may then be taken in twice: intake takes a job id once)."""
    try:
        settle()
    except Exception as exc:
        log.warning("could not settle a job message (%s); RabbitMQ redelivers it", exc)
