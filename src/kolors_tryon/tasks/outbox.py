"""A task run's messages, published together in one AMQP transaction.

A batch intake run announces three events per job (queued, submitting, submitted) and
sends the first-poll message of its batch. Waiting for a publisher confirm after each
message costs a broker round trip each (on quorum queues a replicated write too), which
was a fifth of a job's cost. So, on RabbitMQ, the
messages a task run publishes are gathered in order and sent when its body is done, on
a channel in transaction mode (`tx.select`): when `tx.commit` returns, the broker has
taken every one of them, the guarantee a confirm gives one message. (A channel cannot be
in confirm and transaction mode at once, so the outbox has a connection of its own, one
per process.)

Nothing is half sent: if the connection fails during the flush, the transaction is void,
and the whole set is published again on a new connection, with the retry policy of any
publish (`PUBLISH_RETRY_POLICY`); when that is spent the flush raises like a failed
publish would, and the task's outage handling takes over. A commit whose answer was lost
may be published twice: every message here is one that may arrive twice (task messages
are fenced in the store, events and webhooks are at least once).

The flush happens before the task returns, so before its message is acked: a worker
killed before the commit loses the run's messages together with its ack, and the
message runs again. The embedded broker has no transactions: there messages go at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from celery import Celery
from kombu import Connection, Producer
from kombu.exceptions import OperationalError as BrokerOperationalError

from kolors_tryon.config.celery import PUBLISH_RETRY_POLICY
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.tasks.runtime import settings_of

log = logging.getLogger(__name__)

#: One message to publish, given the producer to publish it with.
Publish = Callable[[Producer], object]

_gathered: ContextVar[list[Publish] | None] = ContextVar("tryon_outbox", default=None)


def send_task(app: Celery, name: TaskName, **options: Any) -> None:
    """`app.send_task(name, **options)`, in the outbox when a task run gathers one."""
    pending = _gathered.get()
    if pending is None:
        app.send_task(name, **options)
        return
    # retry=False: a failed flush is retried whole, never one message on a new channel
    # outside the transaction.
    pending.append(lambda producer: app.send_task(name, producer=producer, retry=False, **options))


def publish(app: Celery, body: Any, **options: Any) -> None:
    """`Producer.publish(body, **options)`: in the outbox when a task run gathers one,
    else at once with a pooled producer (confirmed, retried)."""
    pending = _gathered.get()
    if pending is not None:
        pending.append(lambda producer: producer.publish(body, retry=False, **options))
        return
    with app.producer_or_acquire() as producer:
        producer.publish(body, retry=True, retry_policy=PUBLISH_RETRY_POLICY, **options)


@contextmanager
def gathering(app: Celery) -> Iterator[None]:
    """Gather what the block publishes; publish it in one transaction when it ends.

    When the block raises, what it gathered is still published (an event of a state
    change that was written must not be lost because a later line failed), and then the
    block's exception goes on.
    """
    if not settings_of(app).uses_rabbitmq or _gathered.get() is not None:
        yield  # embedded broker, or already gathering: nothing to do here
        return
    pending: list[Publish] = []
    token = _gathered.set(pending)
    try:
        yield
    except BaseException:
        _gathered.reset(token)
        try:
            _outbox_for(app).send(pending)
        except Exception:
            log.exception("could not publish %d message(s) of a failed run", len(pending))
        raise
    _gathered.reset(token)
    _outbox_for(app).send(pending)


def flush(app: Celery) -> None:
    """Publish what the run gathered so far, in one transaction, and go on gathering.

    For a run whose later part may wait (a batch's straggling create): what is done must
    not wait with it. Outside a gathering run messages went at once: nothing to do.
    """
    pending = _gathered.get()
    if not pending:
        return
    ready = pending[:]
    del pending[:]  # the list stays the run's: later messages join it
    _outbox_for(app).send(ready)


class TxOutbox:
    """One process's connection for transactional publishing, opened on first use."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: Connection | None = None
        self._channel: Any = None  # py-amqp's Channel: kombu's types lack `tx_*`
        self._producer: Producer | None = None

    def send(self, messages: list[Publish]) -> None:
        """Publish every message and commit; on a connection failure, all again."""
        if not messages:
            return
        tries = int(PUBLISH_RETRY_POLICY["max_retries"]) + 1
        interval = PUBLISH_RETRY_POLICY["interval_start"]
        for attempt in range(tries):
            try:
                producer = self._ready()
                for message in messages:
                    message(producer)
                self._channel.tx_commit()
                return
            except Exception as exc:
                if not self._is_connection_error(exc) or attempt + 1 == tries:
                    self.close()
                    raise
                log.warning(
                    "publishing %d message(s) failed (%s); all again in %.1f s",
                    len(messages),
                    type(exc).__name__,
                    interval,
                )
                self.close()
                time.sleep(interval)
                interval = min(
                    interval + PUBLISH_RETRY_POLICY["interval_step"],
                    PUBLISH_RETRY_POLICY["interval_max"],
                )

    def _ready(self) -> Producer:
        if self._producer is None:
            connection = Connection(self._url)
            channel: Any = connection.channel()
            channel.tx_select()
            self._connection, self._channel = connection, channel
            self._producer = Producer(channel)
        return self._producer

    def _is_connection_error(self, exc: Exception) -> bool:
        if isinstance(exc, OSError | BrokerOperationalError):
            # `app.send_task` wraps a connection error in kombu's OperationalError: the
            # first flush after a broker blip met this process's dead connection, was not
            # sent again on a new one, and the run's claims and follow-ups were lost.
            return True
        probe = self._connection or Connection(self._url)
        return isinstance(exc, probe.connection_errors + probe.channel_errors)

    def close(self) -> None:
        connection = self._connection
        self._connection, self._channel, self._producer = None, None, None
        if connection is not None:
            # Already broken, most likely: there is nothing to close cleanly.
            with contextlib.suppress(Exception):
                connection.release()


_outboxes: dict[tuple[int, int], TxOutbox] = {}
_lock = threading.Lock()


def _outbox_for(app: Celery) -> TxOutbox:
    """This process's outbox for `app` (connections must not cross a fork)."""
    key = (os.getpid(), id(app))
    with _lock:
        outbox = _outboxes.get(key)
        if outbox is None:
            outbox = TxOutbox(settings_of(app).effective_broker_url)
            _outboxes[key] = outbox
        return outbox
