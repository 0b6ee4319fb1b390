"""Intake: a validated job recorded `queued` (or a refused one `rejected`), under its id's rules.

A job id is taken once: the same content again is a duplicate, other content a conflict,
except after a rejection, which a corrected message under the same id starts over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kolors_tryon.config.producers import DEFAULT_PRODUCER, job_key
from kolors_tryon.errors import JobNotFound
from kolors_tryon.store.database import Database
from kolors_tryon.store.jobs import Jobs
from kolors_tryon.store.queries import JOBS, PAYLOADS, column_keys
from kolors_tryon.store.records import JobRecord, record_from_row
from kolors_tryon.store.states import JobState
from kolors_tryon.store.tables import JobRow, PayloadRow
from kolors_tryon.store.webhooks import events_column


class Admission(StrEnum):
    """What intake did with a message under a job id."""

    CREATED = "created"  # a new job
    DUPLICATE = "duplicate"  # the same job again: nothing to do
    CONFLICT = "conflict"  # other content under a taken id: not taken, counted, noted
    RESUBMITTED = "resubmitted"  # other content for a rejected job: it starts over


@dataclass(frozen=True)
class NewJob:
    """A valid job to record `queued`: what `Intake.accept` takes."""

    job_id: str
    body: Mapping[str, Any]
    content_hash: str | None = None
    priority: int = 0
    model_name: str | None = None
    metadata: Mapping[str, Any] | None = None
    callback_url: str | None = None
    webhook_events: Sequence[str] | None = None
    # The deadline as an instant (Unix seconds), or as seconds after acceptance (counted
    # on the database's clock when the job is recorded); at most one of the two.
    deadline_at: float | None = None
    deadline_in: float | None = None
    # The job this one retries (`tryon retry`).
    retry_of: str | None = None

    def deadline(self, now: float) -> float | None:
        """The deadline as an instant, for a job recorded at `now`."""
        return now + self.deadline_in if self.deadline_in is not None else self.deadline_at

    # The pool account the job asked for (store/accounts.py); None: any.
    account_pin: str | None = None
    producer: str = DEFAULT_PRODUCER
    batch_id: str | None = None

    @property
    def key(self) -> str:
        """The job's key in the store: its id, scoped by its producer."""
        return job_key(self.producer, self.job_id)


@dataclass(frozen=True)
class Admitted:
    record: JobRecord
    outcome: Admission

    @property
    def changed(self) -> bool:
        """The record changed (an event is due)."""
        return self.outcome is not Admission.DUPLICATE


class Intake:
    """Admitting jobs: `accept` for valid ones (one or many), `reject` for invalid ones."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._jobs = Jobs(db)

    def accept(self, jobs: Sequence[NewJob]) -> list[Admitted]:
        """Record valid jobs as `queued` with their create bodies, in their order.

        A job id already taken by the same content is a duplicate (nothing happens); by
        other content, a conflict (counted and noted, the message is not taken), unless
        the job was `rejected`: a rejected job never reached the API, so a corrected
        message under its id starts it over as `queued` (a resubmission).

        The new jobs go in one transaction; an id already taken (or twice in `jobs`)
        then goes on its own, as does every job if another worker took one of these
        ids meanwhile.
        """
        first: dict[str, int] = {}
        for i, job in enumerate(jobs):
            first.setdefault(job.key, i)
        admitted: dict[int, Admitted] = {}
        try:
            with self._db.transaction() as (s, now):
                taken = set(s.scalars(select(JobRow.job_id).where(JobRow.job_id.in_(first))))
                fresh = {
                    i: _queued_values(job, now)
                    for i, job in enumerate(jobs)
                    if job.key not in taken and first[job.key] == i
                }
                if fresh:
                    # Core inserts (executemany): no ORM objects to build for rows that
                    # are written once and read back as records from the same values.
                    s.execute(insert(JOBS), [column_keys(row) for row, _ in fresh.values()])
                    s.execute(insert(PAYLOADS), [payload for _, payload in fresh.values()])
                for i, (row, _) in fresh.items():
                    # No `images` column value: SQL NULL (a None there would be JSON null).
                    record = record_from_row(cast(JobRow, SimpleNamespace(images=None, **row)))
                    admitted[i] = Admitted(record, Admission.CREATED)
        except IntegrityError:
            admitted = {}  # raced by another worker: each job on its own
        return [admitted.get(i) or self._accept_one(job) for i, job in enumerate(jobs)]

    def _queued_rows(self, job: NewJob, now: float) -> tuple[JobRow, PayloadRow]:
        row, payload = _queued_values(job, now)
        return JobRow(**row), PayloadRow(**payload)

    def _accept_one(self, job: NewJob) -> Admitted:
        job_id, callback_url, webhook_events = job.key, job.callback_url, job.webhook_events
        priority, model_name, metadata = job.priority, job.model_name, job.metadata
        payload = _payload(job)

        def fresh(now: float) -> tuple[JobRow, PayloadRow | None]:
            return self._queued_rows(job, now)

        def restart(row: JobRow, s: Session, now: float) -> None:
            _set_webhook_target(row, callback_url, webhook_events)
            row.state = JobState.QUEUED
            row.error_code = None
            row.error_message = None
            row.finished_at = None
            row.priority = priority
            row.model_name = model_name
            row.account_pin = job.account_pin
            row.job_metadata = dict(metadata or {})
            row.deadline_at = job.deadline(now)
            s.merge(PayloadRow(job_id=job_id, body=payload))

        return self._admit(job_id, job.content_hash, fresh, restart)

    def reject(
        self,
        job_id: str,
        *,
        code: str,
        message: str,
        content_hash: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
        producer: str = DEFAULT_PRODUCER,
    ) -> Admitted:
        """Record a job that never reaches the API (the same id rules as `accept`).

        The webhook target is kept too: the producer hears of the rejection.
        """
        own_id, job_id = job_id, job_key(producer, job_id)

        def fresh(now: float) -> tuple[JobRow, PayloadRow | None]:
            row = self._new_row(job_id, JobState.REJECTED, metadata, now, content_hash)
            row.producer, row.producer_job_id = producer, own_id
            _set_webhook_target(row, callback_url, webhook_events)
            row.error_code = code
            row.error_message = message
            row.finished_at = now
            return row, None

        def restart(row: JobRow, _s: Session, now: float) -> None:
            # Rejected again, for a new reason: the record says the latest one.
            _set_webhook_target(row, callback_url, webhook_events)
            row.error_code = code
            row.error_message = message
            row.finished_at = now

        return self._admit(job_id, content_hash, fresh, restart)

    def _admit(
        self,
        job_id: str,
        content_hash: str | None,
        fresh: Callable[[float], tuple[JobRow, PayloadRow | None]],
        restart: Callable[[JobRow, Session, float], None],
    ) -> Admitted:
        try:
            with self._db.transaction() as (s, now):
                row, payload = fresh(now)
                s.add(row)
                s.flush()  # the payload's foreign key needs the job row first
                if payload is not None:
                    s.add(payload)
                created = record_from_row(row)
        except IntegrityError:
            pass  # the id is taken: decide below
        else:
            return Admitted(created, Admission.CREATED)
        with self._db.transaction() as (s, now):
            existing = s.scalar(select(JobRow).where(JobRow.job_id == job_id).with_for_update())
            if existing is None:  # pragma: no cover - only after a concurrent delete
                raise JobNotFound(job_id)  # it vanished while being admitted
            same = content_hash is None or existing.content_hash in (None, content_hash)
            if same:
                outcome = Admission.DUPLICATE
            elif existing.state == JobState.REJECTED:
                outcome = Admission.RESUBMITTED
                restart(existing, s, now)
                existing.content_hash = content_hash
                existing.resubmissions += 1
                existing.note = "sent again with other content after it was rejected"
                existing.updated_at = now
            else:
                outcome = Admission.CONFLICT
                existing.conflicts += 1
                existing.note = (
                    f"a message with other content came under this job id while it was "
                    f"{existing.state}; it was not taken (use a new job id)"
                )
                existing.updated_at = now
        # Read after the transaction: a concurrent delete is the only way to miss it.
        return Admitted(self._jobs.require(job_id), outcome)

    @staticmethod
    def _new_row(
        job_id: str,
        state: JobState,
        metadata: Mapping[str, Any] | None,
        now: float,
        content_hash: str | None,
    ) -> JobRow:
        return JobRow(
            job_id=job_id,
            state=state,
            job_metadata=dict(metadata or {}),
            content_hash=content_hash,
            created_at=now,
            updated_at=now,
        )


def _set_webhook_target(
    row: JobRow, callback_url: str | None, webhook_events: Sequence[str] | None
) -> None:
    """Keep the producer's webhook target on the job row (never in its record: the URL
    may carry the producer's own token)."""
    row.callback_url = callback_url
    row.webhook_events = events_column(webhook_events)


def _queued_values(job: NewJob, now: float) -> tuple[dict[str, Any], dict[str, str]]:
    """A new queued job's row (by attribute name) and its payload row, as values."""
    row: dict[str, Any] = {
        "job_id": job.key,
        "producer": job.producer,
        "producer_job_id": job.job_id,
        "batch_id": job.batch_id,
        "state": JobState.QUEUED,
        "priority": job.priority,
        "model_name": job.model_name,
        "account_pin": job.account_pin,
        "kling_task_id": None,
        "error_code": None,
        "error_message": None,
        "attempts": 0,
        "retries": 0,
        "final_unit_deduction": None,
        "job_metadata": dict(job.metadata or {}),
        "content_hash": job.content_hash,
        "conflicts": 0,
        "resubmissions": 0,
        "note": None,
        # Kept on the row, never in its record: the URL may carry the producer's token.
        "callback_url": job.callback_url,
        "webhook_events": events_column(job.webhook_events),
        "created_at": now,
        "updated_at": now,
        "submitted_at": None,
        "finished_at": None,
        "overdue_at": None,
        "deadline_at": job.deadline(now),
        "retry_of": job.retry_of,
    }
    return row, {"job_id": job.key, "body": _payload(job)}


def _payload(job: NewJob) -> str:
    """The create body as stored: another producer's `external_task_id` is the job's
    key, unique on the account (`default`'s body already carries its id, as before)."""
    if job.producer == DEFAULT_PRODUCER:
        return json.dumps(dict(job.body))
    return json.dumps({**job.body, "external_task_id": job.key})
