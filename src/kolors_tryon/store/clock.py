"""One clock for every timestamp that several workers compare: the database's.

Leases, attempt windows, account pauses and deadlines are written by one worker and read
by another. Were each worker to use its own clock, a machine whose clock runs a few
minutes fast would see live claims as expired and take them over (two owners, two
creates). So every comparison is made against the database server's clock.

Reading it in every transaction cost a round trip each (a tenth of the store's time in
bench/throughput.py), so a process reads it at most once a second
(`STORE_CLOCK_REFRESH`) and in between adds the offset it measured to its own steady
clock (`time.monotonic`, which no change of the machine's wall clock moves). A worker
whose wall clock is minutes off still keeps the database's time, to within the round
trip's half and microseconds of drift; a step of the database's clock is seen within a
second.

Tests (and the orchestration specs) inject a clock of their own instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine, literal_column, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from kolors_tryon.config.defaults import STORE_CLOCK_REFRESH

# Unix seconds as the server sees them. PostgreSQL: clock_timestamp() is the real time
# (now() would be the transaction's start). SQLite: julianday('now') has millisecond
# precision; SQLite runs in the worker's process, on the one machine it serves.
_NOW_SQL = {
    "postgresql": "extract(epoch from clock_timestamp())",
    "sqlite": "(julianday('now') - 2440587.5) * 86400.0",
}


def _now_query(dialect: str) -> Select[tuple[float]] | None:
    expression = _NOW_SQL.get(dialect)
    if expression is None:
        return None
    return select(literal_column(expression))


class StoreClock:
    """Reads "now" from the database, or from an injected function."""

    def __init__(self, engine: Engine, injected: Callable[[], float] | None = None) -> None:
        self._injected = injected
        # A database we have no expression for falls back to this process's clock.
        self._query = None if injected is not None else _now_query(engine.dialect.name)
        # (database time - steady clock, steady time of that reading); one tuple, so
        # that threads sharing the store read a consistent pair.
        self._offset: tuple[float, float] | None = None

    @property
    def injected(self) -> bool:
        return self._injected is not None

    def now_in(self, session: Session) -> float:
        """The current time, read inside `session` (no extra connection)."""
        if self._injected is not None:
            return float(self._injected())
        if self._query is None:
            return time.time()
        steady = time.monotonic()
        known = self._offset
        if known is not None and steady - known[1] < STORE_CLOCK_REFRESH:
            return steady + known[0]
        now = float(session.scalar(self._query) or 0.0)
        after = time.monotonic()
        # The server read its clock somewhere within the round trip: take the middle.
        self._offset = (now - (steady + after) / 2, after)
        return now
