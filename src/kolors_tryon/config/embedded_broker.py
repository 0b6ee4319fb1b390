"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, polling quickly.

kombu 5.7's SQLAlchemy channel hands *every* transport option to `create_engine`, so the
virtual transports' `polling_interval` option (which the default of one poll a second
makes necessary: every hop of a job would wait up to a second) crashes it with
"Invalid argument(s) 'polling_interval' sent to create_engine()". This subclass keeps
the transport's own options away from the engine. It is registered under the URL scheme
`tryon-sqlite+sqlite:///path`, so a plain `sqla+` URL keeps kombu's behaviour.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as SqlaChannel
from kombu.transport.sqlalchemy import Transport as SqlaTransport
from sqlalchemy import create_engine

SCHEME = "tryon-sqlite"
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
    }
)


class Channel(SqlaChannel):
    """SQLAlchemy channel that passes only engine options to `create_engine`."""

    def _engine_from_config(self) -> Any:
        conninfo: Any = self.connection.client
        options = {
            key: value
            for key, value in conninfo.transport_options.items()
            if key not in _KOMBU_OPTIONS
        }
        return create_engine(conninfo.hostname, **options)


class Transport(SqlaTransport):
    """kombu's SQLAlchemy transport with the channel above."""

    Channel = Channel


def register() -> None:
    """Make `tryon-sqlite+sqlite:///...` URLs resolve to this transport (idempotent)."""
    TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"


register()
