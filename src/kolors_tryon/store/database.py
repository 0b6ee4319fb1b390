"""The database every aggregate of the store shares: its engine, its transactions, its clock.

Each aggregate (intake, claims, submits, tracking, account, secrets, copies, retention,
webhooks) is a class taking one `Database`, so that they share one connection pool and
one clock, and a test that injects a clock injects it for all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from kolors_tryon.store.clock import StoreClock
from kolors_tryon.store.outage import is_outage


def make_engine(url: str) -> Engine:
    """An engine tuned for concurrent workers: WAL and a busy timeout on SQLite."""
    if url.startswith("sqlite"):
        # hide_parameters: an error message must never carry a job's photos or metadata.
        engine = create_engine(url, connect_args={"timeout": 60}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        hide_parameters=True,
        # A database host that does not answer must fail the call (and the task waits
        # and retries), not hang a worker process for the kernel's TCP timeout.
        connect_args={"connect_timeout": 10},
    )


class Database:
    """The engine, its sessions, and "now" on the database's clock.

    Args:
        engine: the database.
        clock: a clock to use instead of the database's (tests and orchestration specs).
    """

    # "The database does not answer" (wait) as opposed to "our statement is wrong" (a bug):
    # the aggregates' callers ask this of what they raise.
    is_outage = staticmethod(is_outage)

    def __init__(self, engine: Engine, clock: Callable[[], float] | None = None) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = StoreClock(engine, clock)

    def session(self) -> Session:
        """A session for reads that need no transaction's time (the caller closes it)."""
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[tuple[Session, float]]:
        """A transaction and the database's time at its start."""
        with self._sessions() as session, session.begin():
            yield session, self._clock.now_in(session)

    def now(self) -> float:
        """The current time on the store's clock (Unix seconds)."""
        with self._sessions() as session:
            return self._clock.now_in(session)

    def dispose(self) -> None:
        """Drop pooled connections (after a fork, or at shutdown)."""
        self.engine.dispose()
