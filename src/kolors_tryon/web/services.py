"""What the HTTP service talks to: the broker (jobs and callbacks) and the job store.

Opened once per app and shared by every request: one SQLAlchemy engine (its pool), a
small pool of confirmed-publish `JobPublisher`s (a kombu connection is not
thread-safe, and requests run in a thread pool), and one Celery app whose own producer
pool sends `tryon.callback`. Nothing here holds per-request state, so any number of
copies of the service can run behind a load balancer.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import Counter
from typing import Any, Final

from celery import Celery
from kombu import Connection
from sqlalchemy import text

from kolors_tryon.config import Settings
from kolors_tryon.config.accounts import DEFAULT_ACCOUNT, account_pool
from kolors_tryon.config.celery import celery_config
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.errors import BatchNotFound, JobNotFound
from kolors_tryon.jobs import JobMessage, ValidationOptions, ValidJob, validate_job
from kolors_tryon.observe import metrics
from kolors_tryon.ops.batch_export import batch_csv
from kolors_tryon.pipeline.callback_tokens import CallbackSecrets, callback_secrets
from kolors_tryon.pipeline.lifecycle import RetryPlan, cancel_jobs, newly_cancelled, plan_retry
from kolors_tryon.producer import JobPublisher
from kolors_tryon.store import BatchRecord, JobRecord, JobStore, prepare_schema
from kolors_tryon.store.lifecycle import Cancelled, CancelOutcome
from kolors_tryon.store.listing import JobFilter, JobPage
from kolors_tryon.web.slots import DaemonSlots

__all__ = ["CALLBACK_TASK", "WebServices"]

log = logging.getLogger(__name__)

# The task name a Kling callback travels under: args [job_id, task object] (kept as a
# name of the public surface; the enumeration is `config.task_names.TaskName`).
CALLBACK_TASK: Final = TaskName.CALLBACK


class WebServices:
    """The broker, the store and the per-process counters of one app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._signing: dict[str, tuple[str, ...]] | None = None
        self.options = ValidationOptions.from_settings(settings)
        self.counters: Counter[str] = Counter()
        self._counter_lock = threading.Lock()
        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = JobStore.from_url(settings.effective_database_url)
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._publishers: queue.SimpleQueue[JobPublisher] = queue.SimpleQueue()
        self._celery: Any = None
        self._celery_lock = threading.Lock()
        self._callback_secrets: CallbackSecrets | None = None
        # URL preflight's own bounded threads (web.slots), apart from anyio's pool.
        self.preflight_slots = DaemonSlots(settings.web_preflight_slots, "tryon-preflight")

    # ------------------------------------------------------------------ counters ----
    def count(self, name: str, n: int = 1) -> None:
        with self._counter_lock:
            self.counters[name] += n
        if name.startswith("callbacks_"):
            for _ in range(n):
                metrics.callback_received(name.removeprefix("callbacks_"))

    def counters_snapshot(self) -> dict[str, int]:
        with self._counter_lock:
            return dict(self.counters)

    # ------------------------------------------------------------------ store -------
    def ensure_schema(self) -> None:
        """Check the schema once (embedded: upgrade it); an outdated store raises SchemaOutdated."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                prepare_schema(self.store, self.settings)
                self._schema_ready = True

    def get_job(self, job_id: str, producer: str) -> JobRecord:
        """`producer`'s job's record.

        Raises:
            JobNotFound: no job of that id (another producer's job is not found either).
        """
        self.ensure_schema()
        record = self.store.get(job_id, producer)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def cancel_job(self, job_id: str, producer: str) -> Cancelled:
        """Cancel the job if no create can have reached Kling; tell the workers if so.

        Raises:
            JobNotFound: no job of that id.
        """
        self.ensure_schema()
        (answer,) = cancel_jobs(self.store, [job_id], producer)
        if answer.outcome is CancelOutcome.NOT_FOUND:
            raise JobNotFound(job_id)
        cancelled = newly_cancelled([answer])
        if cancelled:
            try:
                self.celery.send_task(TaskName.CANCELLED, args=[cancelled])
            except Exception as exc:  # the cancel stands; the sweep plans its webhook
                log.error("announcing cancelled job %r failed: %s", job_id, type(exc).__name__)
        return answer

    def retry_job(
        self, job_id: str, producer: str, human: str | None, cloth: str | None
    ) -> RetryPlan:
        """Queue a new job that retries `job_id`, validated as any job at the door.

        Raises:
            JobNotFound: no job of that id.
            RetryRefused: not failed, rejected or cancelled; or its photos are gone.
            JobRejected: the photos given are invalid.
        """
        self.ensure_schema()
        plan = plan_retry(self.store, job_id, human=human, cloth=cloth, producer=producer)
        self.publish_job(validate_job(json.dumps(plan.message), self.options), producer)
        return plan

    def list_jobs(self, filters: JobFilter, cursor: str | None, limit: int) -> JobPage:
        """A page of jobs, newest first (`store.listing`)."""
        self.ensure_schema()
        return self.store.listing.page(filters, limit=limit, cursor=cursor)

    def get_batch(self, batch_id: str, producer: str) -> BatchRecord:
        """`producer`'s batch.

        Raises:
            BatchNotFound: no batch of that id (another producer's is not found either).
        """
        self.ensure_schema()
        batch = self.store.batches.get(producer, batch_id)
        if batch is None:
            raise BatchNotFound(batch_id)
        return batch

    def export_batch(self, batch_id: str, producer: str) -> str:
        """`producer`'s batch as CSV (ops/batch_export.py); BatchNotFound if unknown."""
        self.get_batch(batch_id, producer)
        return batch_csv(self.store.batches.jobs(producer, batch_id))

    def open_batch(self, producer: str, batch_id: str, name: str | None) -> None:
        """Create `producer`'s batch (a repeat of its id is no-op)."""
        self.ensure_schema()
        self.store.batches.open(producer, [batch_id], name=name)

    def list_batches(self, producer: str, limit: int, after: str | None) -> list[BatchRecord]:
        """A page of `producer`'s batches, newest first."""
        self.ensure_schema()
        return self.store.batches.page(producer, limit=limit, after=after)

    def callback_secrets(self) -> CallbackSecrets:
        """The secrets that verify callback tokens (read once: they change only with a
        restart, and a generated one never changes)."""
        if self._callback_secrets is None:
            self.ensure_schema()
            self._callback_secrets = callback_secrets(self.settings, self.store)
        return self._callback_secrets

    def kling_signing_secrets(self, account: str | None) -> tuple[str, ...]:
        """The `whsec_` secrets Kling signs `account`'s callbacks with (none: unsigned).

        A callback URL without an account is the single account's, named `default`.
        """
        if self._signing is None:
            self._signing = {
                a.name: tuple(s.get_secret_value() for s in a.callback_secrets)
                for a in account_pool(self.settings)
            }
        return self._signing.get(account or DEFAULT_ACCOUNT, ())

    def check_store(self) -> None:
        """Raise unless the store answers a trivial query."""
        with self.store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    # ------------------------------------------------------------------ broker ------
    def check_broker(self) -> None:
        """Raise unless the broker accepts a connection."""
        connection = Connection(
            self.settings.effective_broker_url,
            connect_timeout=self.settings.http_connect_timeout,
        )
        try:
            connection.connect()
        finally:
            connection.release()

    def publish_job(self, valid: ValidJob, producer: str) -> str:
        """Publish a validated job (confirmed on RabbitMQ); returns its job id.

        The normalized message goes out with its job id written in, so the worker files
        it under exactly the id we answered with, even when that id was derived.
        """
        message: JobMessage = valid.message.model_copy(update={"job_id": valid.job_id})
        try:
            publisher = self._publishers.get_nowait()
        except queue.Empty:
            publisher = JobPublisher(self.settings)
        try:
            job_id = publisher.publish(message, producer)
        except BaseException:
            publisher.close()  # its connection may be broken: never reuse it
            raise
        self._publishers.put(publisher)
        return job_id

    @property
    def celery(self) -> Any:
        """The Celery app that sends `tryon.callback` (created on first use)."""
        if self._celery is None:
            with self._celery_lock:
                if self._celery is None:
                    # Only sends by task name: the configuration, no tasks, no worker.
                    app = Celery("kolors_tryon.web", set_as_current=False)
                    app.conf.update(celery_config(self.settings))
                    self._celery = app
        return self._celery

    def forward_callback(self, job_id: str, task: dict[str, Any]) -> str:
        """Hand a verified callback to the workers as `tryon.callback(job_id, task)`."""
        # Routed by name (config/celery.py: the `tasks` queue, beside submit).
        result = self.celery.send_task(CALLBACK_TASK, args=[job_id, task])
        return str(result.id)

    # ------------------------------------------------------------------ shutdown ----
    def close(self) -> None:
        while True:
            try:
                self._publishers.get_nowait().close()
            except queue.Empty:
                break
        if self._celery is not None:
            self._celery.close()
        self.store.dispose()
