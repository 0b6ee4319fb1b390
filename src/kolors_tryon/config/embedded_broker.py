"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, made safe to lose.

Three defects of kombu 5.7's SQLAlchemy transport are fixed here, because the embedded
broker is the service's default and must keep the promise that no job is lost:

1. Its channel hands *every* transport option to `create_engine`, so the virtual
   transports' `polling_interval` option (needed: the default of one poll a second makes
   every hop of a job wait up to a second) crashes it ("Invalid argument(s)
   'polling_interval' sent to create_engine()"). Only engine options go to the engine.
2. A delivered message is only marked invisible and stays invisible for ever: a worker
   killed with unacknowledged messages loses them. Here a message handed out longer ago
   than `visibility_timeout` seconds is delivered again (as kombu's Redis transport does).
   Redelivery is safe because every task of the service is idempotent (job ids, claim
   owners and poll fences); the timeout must exceed the longest countdown a worker holds.
3. Acknowledged messages are never deleted, so the file keeps every job message, photos
   included, for ever. Here an ack (or a reject) deletes the row.

The transport is registered under the URL scheme `tryon-sqlite+sqlite:///path`, so a plain
`sqla+` URL keeps kombu's own behaviour.
"""

from __future__ import annotations

import datetime
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as SqlaChannel
from kombu.transport.sqlalchemy import Transport as SqlaTransport
from kombu.transport.virtual import Empty
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from sqlalchemy import create_engine, text

SCHEME = "tryon-sqlite"
DEFAULT_VISIBILITY_TIMEOUT = 900.0
# The row a delivered message came from, carried in its properties until it is acked.
ROW_PROPERTY = "x-tryon-broker-row"
# Options read by kombu itself (virtual transport and retry policy), not by SQLAlchemy.
_KOMBU_OPTIONS = frozenset(
    {
        "queue_tablename",
        "message_tablename",
        "callback",
        "errback",
        "max_retries",
        "interval_start",
        "interval_step",
        "interval_max",
        "retry_errors",
        "polling_interval",
        "body_encoding",
        "deadletter_queue",
        "confirm_publish",
        "visibility_timeout",
    }
)


class Channel(SqlaChannel):
    """SQLAlchemy channel with engine-only options, redelivery and deletion on ack."""

    def _engine_from_config(self) -> Any:
        conninfo: Any = self.connection.client
        options = {
            key: value
            for key, value in conninfo.transport_options.items()
            if key not in _KOMBU_OPTIONS
        }
        return create_engine(conninfo.hostname, **options)

    @property
    def visibility_timeout(self) -> float:
        connection: Any = self.connection
        options: Any = connection.client.transport_options
        return float(options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT))

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        # kombu's SQLAlchemy channel API is untyped in the stubs; treat it as such.
        channel: Any = self
        queue_row = channel._get_or_create(queue)
        session: Any = self.session
        model: Any = self.message_cls
        if session.bind.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            # kombu stamps `sent_at` when a message is handed out (its onupdate): one
            # handed out before the cutoff was never acked, its consumer is gone.
            cutoff = datetime.datetime.now() - datetime.timedelta(seconds=self.visibility_timeout)
            session.query(model).filter(
                model.queue_id == queue_row.id,
                model.visible == False,  # noqa: E712 - SQL comparison
                model.sent_at < cutoff,
            ).update({model.visible: True}, synchronize_session=False)
            message = (
                session.query(model)
                .with_for_update()
                .filter(model.queue_id == queue_row.id, model.visible == True)  # noqa: E712
                .order_by(model.sent_at, model.id)
                .limit(1)
                .first()
            )
            if message is None:
                raise Empty()
            message.visible = False
            payload = loads(bytes_to_str(message.payload))
            payload.setdefault("properties", {})[ROW_PROPERTY] = message.id
            return payload
        finally:
            session.commit()

    def _forget(self, delivery_tag: Any) -> None:
        """Delete the row of a delivered message: it is acked."""
        self._delete_row(self._row_of(delivery_tag))

    def _row_of(self, delivery_tag: Any) -> Any:
        """The broker row a delivered message came from (None when unknown)."""
        try:
            delivered = self.qos.get(delivery_tag)
        except KeyError:
            return None
        return delivered.properties.get(ROW_PROPERTY)

    def _delete_row(self, row_id: Any) -> None:
        if row_id is None:
            return
        # Acks may come from another thread than the one polling with `self.session`
        # (a Session is not thread-safe): delete through a pooled connection of our own.
        channel: Any = self
        engine, _ = channel._open()
        table = channel.message_cls.__table__
        with engine.begin() as connection:
            connection.execute(table.delete().where(table.c.id == row_id))

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        self._forget(delivery_tag)
        super().basic_ack(delivery_tag, multiple=multiple)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        # A requeue puts a fresh copy back (kombu's `_restore`), and only then may the old
        # row go: deleting first would lose the message if the process died in between.
        row_id = self._row_of(delivery_tag)
        super().basic_reject(delivery_tag, requeue=requeue)
        self._delete_row(row_id)

    def _restore(self, message: Any) -> None:
        super()._restore(message)
        self._delete_row(message.properties.get(ROW_PROPERTY))


class Transport(SqlaTransport):
    """kombu's SQLAlchemy transport with the channel above."""

    Channel = Channel


def register() -> None:
    """Make `tryon-sqlite+sqlite:///...` URLs resolve to this transport (idempotent)."""
    TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"


register()
