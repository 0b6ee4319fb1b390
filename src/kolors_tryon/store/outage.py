"""Telling "the job store (or broker) does not answer" from "our code is wrong".

A database failover, a dropped connection or a locked SQLite file make every call fail
for a minute or two and then pass again: work must wait through it, never be failed or
parked for it. Anything else that raises is a bug or a poison message.
"""

from __future__ import annotations

import sqlite3

import psycopg
from kombu.exceptions import OperationalError as BrokerOperationalError
from sqlalchemy import exc as sa

__all__ = ["is_outage"]


def is_outage(exc: BaseException) -> bool:
    """True when `exc` says a dependency is unavailable, not that the request is wrong."""
    if isinstance(exc, sa.DBAPIError):
        # OperationalError: connection refused or lost, server shutting down, a locked
        # SQLite file. InterfaceError: the connection is closed. A statement that the
        # database refuses (IntegrityError, ProgrammingError, DataError) is our fault.
        if exc.connection_invalidated:
            return True
        return isinstance(exc, sa.OperationalError | sa.InterfaceError)
    if isinstance(exc, sa.TimeoutError | sa.DisconnectionError):
        return True  # the pool could not hand out a connection in time
    if isinstance(exc, psycopg.OperationalError | sqlite3.OperationalError):
        return True
    return isinstance(exc, BrokerOperationalError | ConnectionError | TimeoutError)
