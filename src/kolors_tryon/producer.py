"""The Python door: put jobs on the queue, read their records back.

A producer publishes the same plain JSON message any AMQP client would publish to the
durable queue `tryon.jobs`; the workers do the rest. The job id is returned at once:
the message's own `job_id`, or the id derived from its content (the worker derives the
same one), so publishing the same job twice is one job.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from kombu import Connection

from kolors_tryon.config import Settings, load_settings
from kolors_tryon.config.celery import PUBLISH_RETRY_POLICY, topology_for
from kolors_tryon.config.defaults import LIST_LIMIT
from kolors_tryon.config.producers import (
    PRODUCER_HEADER,
    PRODUCER_SIGNATURE_HEADER,
    sign_producer,
)
from kolors_tryon.jobs import JobMessage, JobRejected, ValidationOptions, job_id_of
from kolors_tryon.jobs.local import check_job
from kolors_tryon.store import BatchRecord, JobRecord, JobState, open_store
from kolors_tryon.store.secrets import producer_secret


class InvalidJob(JobRejected):
    """`enqueue()` refused a job before publishing it: the worker would reject it.

    A `JobRejected` (its `problems` name each field and rule), raised before anything
    reaches the queue, so that a producer hears of certain failures at once, not later
    from the job's record.
    """


class JobPublisher:
    """Publishes job messages over one broker connection (confirmed on RabbitMQ).

    Each message is signed as the job of `producer` (by default TRYON_PRODUCER), with the
    store's producer secret, so the workers file it under that producer
    (worker/producer_identity.py).
    """

    def __init__(self, settings: Settings | None = None, producer: str | None = None) -> None:
        self.settings = settings or load_settings()
        self.producer = producer or self.settings.producer
        self._secret: str | None = None
        self._topology = topology_for(self.settings)
        options: dict[str, Any] = {}
        if self.settings.uses_rabbitmq:
            options["confirm_publish"] = True
        else:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._connection = Connection(self.settings.effective_broker_url, transport_options=options)
        self._producer = self._connection.Producer()
        self._declared = False

    def publish(self, job: Mapping[str, Any] | JobMessage, producer: str | None = None) -> str:
        """Publish one job message (of `producer`, by default this publisher's); returns
        its job id. The message is not validated here: the worker validates it and
        records the verdict (`tryon validate` checks offline)."""
        producer = producer or self.producer
        message = (
            job.model_dump(mode="json", exclude_none=True)
            if isinstance(job, JobMessage)
            else dict(job)
        )
        job_id = job_id_of(message)
        body = json.dumps(message, separators=(",", ":"))
        self._producer.publish(
            body,
            headers=self._producer_headers(producer, body),
            exchange="",
            routing_key=self._topology.jobs_queue_name,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            declare=[] if self._declared else self._declarations(),
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
        self._declared = True
        return job_id

    def _producer_headers(self, producer: str, body: str) -> dict[str, str]:
        """The signed producer headers; none for the producer an unsigned message gets
        anyway (`TRYON_AMQP_PRODUCER`), so that its jobs are published without reading
        the store: a store outage must not stop producers (jobs wait in the queue)."""
        if producer == self.settings.amqp_producer:
            return {}
        signature = sign_producer(self._signing_secret(), producer, body.encode("utf-8"))
        return {PRODUCER_HEADER: producer, PRODUCER_SIGNATURE_HEADER: signature}

    def _signing_secret(self) -> str:
        """The store's producer secret, read once per publisher."""
        if self._secret is None:
            store = open_store(self.settings)
            try:
                self._secret = producer_secret(store.secrets)
            finally:
                store.dispose()
        return self._secret

    def _declarations(self) -> list[Any]:
        """The jobs queue, and on RabbitMQ its dead-letter exchange and queue (which
        must exist before any message is dead-lettered, or RabbitMQ drops it)."""
        if not self.settings.uses_rabbitmq:
            return [self._topology.jobs_queue]
        return [self._topology.dead_letter_queue, self._topology.jobs_queue]

    def close(self) -> None:
        self._connection.release()

    def __enter__(self) -> JobPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def enqueue(job: Mapping[str, Any] | JobMessage, settings: Settings | None = None) -> str:
    """Check one job locally, put it on the queue and return its job id.

    Raises:
        InvalidJob: The job breaks a rule the worker checks (schema, Base64 image format,
            size, pixels; URLs by their form, not fetched): nothing was published.
    """
    settings = settings or load_settings()
    message = job.model_dump(mode="json", exclude_none=True) if isinstance(job, JobMessage) else job
    try:
        check_job(message, ValidationOptions.from_settings(settings))
    except JobRejected as rejection:
        raise InvalidJob(rejection.job_id, rejection.problems) from None
    with JobPublisher(settings) as publisher:
        return publisher.publish(job)


def enqueue_batch(
    jobs: Iterable[Mapping[str, Any] | JobMessage],
    *,
    batch_id: str | None = None,
    name: str | None = None,
    settings: Settings | None = None,
) -> tuple[str, list[str]]:
    """Open a batch of TRYON_PRODUCER's and put every job on the queue in it.

    Each job is checked locally first, as `enqueue` does, and none is published unless
    all pass. Returns the batch id (`batch_id`, or a new `batch-<uuid>`) and the job ids.

    Raises:
        InvalidJob: a job breaks a rule the worker checks; nothing was published.
    """
    settings = settings or load_settings()
    batch_id = batch_id or f"batch-{uuid.uuid4().hex}"
    options = ValidationOptions.from_settings(settings)
    messages = []
    for job in jobs:
        message = dict(
            job.model_dump(mode="json", exclude_none=True) if isinstance(job, JobMessage) else job
        )
        message["batch_id"] = batch_id
        try:
            check_job(message, options)
        except JobRejected as rejection:
            raise InvalidJob(rejection.job_id, rejection.problems) from None
        messages.append(message)
    store = open_store(settings)
    try:
        store.batches.open(settings.producer, [batch_id], name=name)
    finally:
        store.dispose()
    with JobPublisher(settings) as publisher:
        return batch_id, [publisher.publish(message) for message in messages]


def get_batch(
    batch_id: str, settings: Settings | None = None, producer: str | None = None
) -> BatchRecord | None:
    """The batch's record (counts by state, units, progress), or None if unknown (or
    another producer's)."""
    settings = settings or load_settings()
    store = open_store(settings)
    try:
        return store.batches.get(producer or settings.producer, batch_id)
    finally:
        store.dispose()


def get_job(
    job_id: str, settings: Settings | None = None, producer: str | None = None
) -> JobRecord | None:
    """The job's record (state, Kling task id, images, error...), or None if unknown.

    `job_id` is the producer's own id; `producer` defaults to TRYON_PRODUCER, and another
    producer's job is None, as an unknown one is.
    """
    settings = settings or load_settings()
    store = open_store(settings)
    try:
        return store.get(job_id, producer or settings.producer)
    finally:
        store.dispose()


def list_jobs(
    state: JobState | None = None,
    *,
    limit: int = LIST_LIMIT,
    settings: Settings | None = None,
    producer: str | None = None,
) -> list[JobRecord]:
    """The jobs of `producer` (default TRYON_PRODUCER), oldest first."""
    settings = settings or load_settings()
    store = open_store(settings)
    try:
        return store.jobs.oldest_first(state, limit=limit, producer=producer or settings.producer)
    finally:
        store.dispose()
