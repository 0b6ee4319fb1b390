"""A worker's claims live as long as the worker, and come back at once when it stops.

Design (issue 16, points 1 and 2): a short lease renewed by a heartbeat, plus a hand-back.
- Each worker has a holder id (`pipeline/holder.py`), chosen before its pool forks; its
  claims' owners start with it. A thread of the main process renews their leases
  (`claim_lease_seconds`, 10 s) every quarter lease. A worker killed with claims in
  memory (an intake run that claimed and was submitting, a dispatch whose messages were
  not yet sent) stops renewing: its slots come back within one lease, not after
  `submit_lease_seconds` (180 s) and the next sweep.
- The same beat looks for claims that ran out (another worker's heartbeat stopped) and
  sends `tryon.recover`, which gives them new owners at once.
- A worker that stops (SIGTERM, every deploy) hands its claims back after its pool has
  finished: `tryon.recover(released=<holder>)` lets another worker take them over now.
- A worker whose broker connection comes back does the same for its own claims (their
  messages may have died with the connection, and its heartbeat kept them alive
  meanwhile), and has lost follow-ups rebuilt from the store (`pipeline.recover`).

Why not a lease per message, renewed by whoever runs it: a claim waits in RabbitMQ
between runs (a 1303 backoff, a queued submit) where no process holds it; those waits
keep their own long leases (`store.claims.extend`), and the heartbeat only has to cover what
would die with its worker. Fencing is unchanged: every create is still conditional on the
owner and a live lease, and a takeover never happens while an attempt window is open, so
only the current holder sends a create, and an ambiguous one is looked up by
external_task_id before anything is sent again.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from celery import Celery, bootsteps
from celery.worker.consumer import Consumer

from kolors_tryon.config import Settings
from kolors_tryon.config.defaults import (
    BROKER_RECONNECT_MAX,
    BROKER_RECONNECT_START,
    CLAIM_HEARTBEATS_PER_LEASE,
)
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.pipeline.holder import current_holder
from kolors_tryon.store import JobStore
from kolors_tryon.tasks.runtime import settings_of

log = logging.getLogger(__name__)


def kick_recovery(app: Celery, released: str | None = None) -> threading.Thread:
    """Send `tryon.recover` from a thread of its own (a publish may wait for the broker;
    the caller is the event loop or the heartbeat, which must not wait)."""

    def send() -> None:
        try:
            app.send_task(TaskName.RECOVER, kwargs={"released": released})
        except Exception:
            log.exception("could not send the recovery task")

    thread = threading.Thread(target=send, name="tryon-recover", daemon=True)
    thread.start()
    return thread


class ClaimHeartbeat:
    """Renews this worker's claims while it lives; hands them back when it stops."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self._app = app
        self._settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tryon-heartbeat", daemon=True)
        self._kick: threading.Thread | None = None
        self._store: JobStore | None = None

    def start(self) -> None:
        if current_holder() is not None:
            self._thread.start()

    def stop(self) -> None:
        """Stop renewing and hand every claim back (the pool has finished by now)."""
        holder = current_holder()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval * 2)
        if holder is not None:
            log.info("stopping: handing this worker's claims back")
            kick_recovery(self._app, released=holder).join(timeout=10)
        if self._store is not None:
            self._store.dispose()

    @property
    def _interval(self) -> float:
        return self._settings.claim_lease_seconds / CLAIM_HEARTBEATS_PER_LEASE

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()
            except Exception as exc:
                # The store away: the claims run out and are taken over, which is right,
                # since this worker cannot write their outcomes either.
                log.warning("claim heartbeat failed (%s)", type(exc).__name__)

    def _beat(self) -> None:
        holder = current_holder()
        if holder is None:
            return
        if self._store is None:
            self._store = JobStore.from_url(self._settings.effective_database_url)
        self._store.claims.renew(
            holder,
            seconds=self._settings.claim_lease_seconds,
            fresh_for=self._settings.submit_lease_seconds,
        )
        kicking = self._kick is not None and self._kick.is_alive()
        if not kicking and self._store.claims.expired(limit=1):
            self._kick = kick_recovery(self._app)


class Recovery(bootsteps.StartStopStep):
    """Runs each time the worker's consumer (re)connects to the broker.

    On the first connection, the claims that the last crash left (their leases ran
    out) are taken over at once; on a reconnection, this worker's own claims are handed
    back too, and lost follow-ups are rebuilt from the store (`pipeline.recover`).
    """

    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        self.app = parent.app
        self.connections = 0
        super().__init__(parent, **kwargs)

    def start(self, parent: Any) -> None:
        self.connections += 1
        released = current_holder() if self.connections > 1 else None
        if released is not None:
            log.warning("broker connection back: handing back this worker's claims")
        kick_recovery(self.app, released=released)


class ReconnectingConsumer(Consumer):
    """Celery's consumer, reconnecting within `BROKER_RECONNECT_MAX` seconds of the
    broker's return (Celery passes kombu's default intervals, growing to 30 s)."""

    def ensure_connected(self, conn: Any) -> Any:
        if settings_of(self.app).uses_rabbitmq:
            conn.ensure_connection = functools.partial(
                conn.ensure_connection,
                interval_start=BROKER_RECONNECT_START,
                interval_step=BROKER_RECONNECT_START,
                interval_max=BROKER_RECONNECT_MAX,
            )
        return super().ensure_connected(conn)
