"""The store's part of webhooks to producers: durable deliveries and their attempts.

(The signing secret, when generated, is kept by `Secrets.get`.)

Why it looks like this:
- A delivery is a row before it is a message, so it survives any restart; the message
  (`tryon.webhook(delivery_id)`) only says "look at it now". A lost message is noticed
  by the sweep (`lost`), a worker killed between a job's state change and the
  delivery's row by `missing`.
- Its id is derived from (job, state, round): it is the stable `webhook-id` receivers
  de-duplicate on, and planning the same delivery twice inserts one row.
- Every attempt is fenced by a conditional UPDATE (`claim`): two messages for
  one delivery never POST at the same time, and only the claim's holder records the
  outcome. Times come from the database's clock, like every other fence here.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, exists, literal, or_, select, update
from sqlalchemy.orm import Session

from kolors_tryon.store.database import Database
from kolors_tryon.store.queries import not_attempted
from kolors_tryon.store.records import JobRecord, iso, record_from_row
from kolors_tryon.store.states import TERMINAL_STATES
from kolors_tryon.store.tables import (
    GoneUrlRow,
    JobRow,
    WebhookAttemptRow,
    WebhookDeliveryRow,
)

# Not a state: a job whose task outlived the tracking deadline (`JobRecord.overdue_at`).
OVERDUE_EVENT = "overdue"
# Not a state either: a person's verdict on a result in the review console (opt-in only:
# a producer that never asked for it gets none).
REVIEWED_EVENT = "reviewed"
# Without `webhook_events` a job's webhooks are its terminal states and `overdue` (the
# notice that replaced the `failed` a deadline used to send; jobs.enums says the same for
# producers; the store keeps its own copy, as it imports nothing of jobs/).
DEFAULT_EVENTS: frozenset[str] = frozenset({*(str(s) for s in TERMINAL_STATES), OVERDUE_EVENT})


class DeliveryStatus(StrEnum):
    """Where a delivery is."""

    PENDING = "pending"  # an attempt is due at `next_at`
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # the schedule is spent (a replay starts it again)
    GONE = "gone"  # the URL answered 410: no more attempts to it
    SKIPPED = "skipped"  # the URL had answered 410 before: not attempted


FINISHED = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.GONE)
REPLAYABLE = (DeliveryStatus.FAILED, DeliveryStatus.GONE, DeliveryStatus.SKIPPED)


def events_column(events: Iterable[str] | None) -> str | None:
    """`webhook_events` as the job row keeps it: ",submitted,succeeded," (None: default)."""
    names = [str(e) for e in events or ()]
    return f",{','.join(names)}," if names else None


def wanted_events(column: str | None) -> frozenset[str]:
    """The states a job row asks webhooks for."""
    return frozenset(filter(None, (column or "").split(","))) or DEFAULT_EVENTS


def delivery_id(job_id: str, state: str, round_: int) -> str:
    """The delivery's id and `webhook-id`: the same for every attempt and every worker."""
    digest = hashlib.sha256(f"{job_id}\n{state}\n{round_}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def body_of(record: JobRecord) -> str:
    """The webhook body: the record as events carry it, compact JSON (what is signed)."""
    return json.dumps(record.to_json_dict(), separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class DeliveryClaim:
    """One attempt of a delivery, taken: only `token`'s holder may POST and record it."""

    id: str
    job_id: str
    state: str
    url: str
    body: str
    attempts: int
    token: str


@dataclass(frozen=True)
class DeliveryBusy:
    """Another message holds the attempt: look again in `wait` seconds."""

    wait: float


@dataclass(frozen=True)
class AttemptView:
    at: str | None
    status_code: int | None
    duration_ms: int
    error: str | None


@dataclass(frozen=True)
class DeliveryView:
    """A delivery as `tryon webhooks JOB_ID` shows it (never its body or URL query)."""

    id: str
    job_id: str
    state: str
    url: str
    status: str
    attempts: int
    next_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str | None
    finished_at: str | None
    history: tuple[AttemptView, ...]


class Deliveries:
    """Webhook deliveries: planned from state changes, attempted under a fence, replayed."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------ planning ------------
    def plan(self, records: Iterable[JobRecord], event: str | None = None) -> list[str]:
        """Create the deliveries these state changes call for; returns the new ones' ids.

        A record gets one when its job has a `callback_url` and asked for its state (by
        default the terminal ones), or for `event` when one is given (`overdue`: not a
        state change). Planning the same change again creates nothing.
        """
        created: list[str] = []
        for record in records:
            if not record.may_have_webhooks:
                continue  # its row had no callback_url: no transaction needed to know
            with self._db.transaction() as (s, now):
                job = s.scalar(select(JobRow).where(JobRow.job_id == record.key))
                if job is None or not job.callback_url:
                    continue
                name = event or str(record.state)
                if name not in wanted_events(job.webhook_events):
                    continue
                new_id = delivery_id(record.key, name, record.resubmissions)
                if s.get(WebhookDeliveryRow, new_id) is not None:
                    continue
                s.add(
                    WebhookDeliveryRow(
                        id=new_id,
                        job_id=record.key,
                        state=name,
                        round=record.resubmissions,
                        url=job.callback_url,
                        url_hash=url_hash(job.callback_url),
                        body=body_of(record),
                        status=DeliveryStatus.PENDING,
                        attempts=0,
                        next_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
            created.append(new_id)
        return created

    def missing(self, *, window: float, limit: int = 200) -> list[JobRecord]:
        """Jobs that ended within `window` s with a webhook target and no delivery row.

        A worker killed between a job's last state change and planning its webhook
        leaves such a job; the sweep plans it (deliveries are per state, so only the
        final state can be found afterwards: its record is still the job's record).
        """
        with self._db.transaction() as (s, now):
            has_delivery = exists().where(
                WebhookDeliveryRow.job_id == JobRow.job_id,
                WebhookDeliveryRow.state == JobRow.state,
                WebhookDeliveryRow.round == JobRow.resubmissions,
            )
            asked = or_(
                JobRow.webhook_events.is_(None),
                JobRow.webhook_events.like(literal("%,") + JobRow.state + literal(",%")),
            )
            rows = s.scalars(
                select(JobRow)
                .where(
                    JobRow.finished_at >= now - window,
                    JobRow.callback_url.is_not(None),
                    JobRow.state.in_([str(state) for state in TERMINAL_STATES]),
                    asked,
                    ~has_delivery,
                )
                .order_by(JobRow.seq)
                .limit(limit)
            ).all()
            return [record_from_row(row) for row in rows]

    # ------------------------------------------------------------ attempts ------------
    def claim(
        self, delivery: str, *, hold: float, early: float = 1.0
    ) -> DeliveryClaim | DeliveryBusy | None:
        """Take the due attempt of a delivery for `hold` seconds.

        Args:
            hold: the longest one attempt may take (timeouts and slack): nobody else may
                POST this delivery until then, even if the holder dies.
            early: how many seconds before `next_at` a message may take it (delays are
                whole seconds, and the broker's clock is not ours).

        Returns:
            The claim; `DeliveryBusy` when another message holds a live attempt; None
            when there is nothing to do (delivered, failed, not due yet: a duplicate or
            stale message; the message that is due, or the sweep, comes later).
        """
        token = uuid.uuid4().hex
        with self._db.transaction() as (s, now):
            moved: Any = s.execute(
                update(WebhookDeliveryRow)
                .where(
                    WebhookDeliveryRow.id == delivery,
                    WebhookDeliveryRow.status == DeliveryStatus.PENDING,
                    WebhookDeliveryRow.next_at <= now + early,
                    not_attempted(now),
                )
                .values(attempting_until=now + hold, claim_token=token, updated_at=now)
            )
            row = s.get(WebhookDeliveryRow, delivery)
            if row is None:
                return None
            if int(moved.rowcount) != 1:
                until = row.attempting_until
                if row.status == DeliveryStatus.PENDING and until is not None and until >= now:
                    return DeliveryBusy(max(1.0, until - now))
                return None
            return DeliveryClaim(
                id=row.id,
                job_id=row.job_id,
                state=row.state,
                url=row.url,
                body=row.body,
                attempts=row.attempts,
                token=token,
            )

    def url_is_gone(self, url: str) -> bool:
        """The URL answered 410 Gone to an earlier delivery (and was not replayed since)."""
        with self._db.transaction() as (s, _):
            return s.get(GoneUrlRow, url_hash(url)) is not None

    def record_attempt(
        self,
        claim: DeliveryClaim,
        *,
        status: DeliveryStatus,
        status_code: int | None,
        duration_ms: int,
        error: str | None,
        retry_in: float | None = None,
        attempted: bool = True,
    ) -> bool:
        """Record the outcome of a claimed attempt; False if the claim was lost meanwhile.

        Args:
            status: the delivery's status from now on (PENDING with `retry_in`).
            attempted: a POST was made (a skipped delivery records none).
        """
        with self._db.transaction() as (s, now):
            values: dict[str, Any] = {
                "status": status,
                "attempting_until": None,
                "claim_token": None,
                "updated_at": now,
                "last_status_code": status_code,
                "last_error": error,
            }
            if attempted:
                values["attempts"] = WebhookDeliveryRow.attempts + 1
            if status is DeliveryStatus.PENDING:
                values["next_at"] = now + float(retry_in or 0.0)
            else:
                values["finished_at"] = now
            moved: Any = s.execute(
                update(WebhookDeliveryRow)
                .where(
                    WebhookDeliveryRow.id == claim.id,
                    WebhookDeliveryRow.claim_token == claim.token,
                )
                .values(**values)
            )
            if int(moved.rowcount) != 1:
                return False
            if attempted:
                s.add(
                    WebhookAttemptRow(
                        delivery_id=claim.id,
                        at=now - duration_ms / 1000.0,
                        status_code=status_code,
                        duration_ms=duration_ms,
                        error=error,
                    )
                )
            if status is DeliveryStatus.GONE:
                s.merge(GoneUrlRow(url_hash=url_hash(claim.url), delivery_id=claim.id, at=now))
            return True

    def lost(self, *, older_than: float, limit: int = 200) -> list[str]:
        """Pending deliveries due more than `older_than` s ago that nobody is attempting.

        Their message was lost (a worker died after recording an attempt and before
        sending the next message, or the broker dropped it): the sweep sends a new one.
        """
        with self._db.transaction() as (s, now):
            return list(
                s.scalars(
                    select(WebhookDeliveryRow.id)
                    .where(
                        WebhookDeliveryRow.status == DeliveryStatus.PENDING,
                        WebhookDeliveryRow.next_at < now - older_than,
                        not_attempted(now),
                    )
                    .order_by(WebhookDeliveryRow.next_at)
                    .limit(limit)
                )
            )

    # ------------------------------------------------------------ operators -----------
    def replay(self, delivery: str) -> bool:
        """Start a failed, gone or skipped delivery again (a new round of the schedule).

        Replaying a delivery whose URL answered 410 says the URL lives again: the mark
        is dropped, so later deliveries to it are attempted too.
        """
        with self._db.transaction() as (s, now):
            row = s.get(WebhookDeliveryRow, delivery)
            if row is None:
                return False
            moved: Any = s.execute(
                update(WebhookDeliveryRow)
                .where(
                    WebhookDeliveryRow.id == delivery,
                    WebhookDeliveryRow.status.in_([str(st) for st in REPLAYABLE]),
                )
                .values(
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    next_at=now,
                    attempting_until=None,
                    claim_token=None,
                    finished_at=None,
                    updated_at=now,
                )
            )
            if int(moved.rowcount) != 1:
                return False
            s.execute(delete(GoneUrlRow).where(GoneUrlRow.url_hash == row.url_hash))
            return True

    def replayable(self, job_id: str) -> list[str]:
        """The ids of a job's deliveries that a replay would start again."""
        with self._db.transaction() as (s, _):
            return list(
                s.scalars(
                    select(WebhookDeliveryRow.id).where(
                        WebhookDeliveryRow.job_id == job_id,
                        WebhookDeliveryRow.status.in_([str(st) for st in REPLAYABLE]),
                    )
                )
            )

    def of_job(self, job_id: str) -> list[DeliveryView]:
        """A job's deliveries, oldest first, each with its attempts."""
        with self._db.transaction() as (s, _):
            rows = s.scalars(
                select(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.job_id == job_id)
                .order_by(WebhookDeliveryRow.created_at, WebhookDeliveryRow.id)
            ).all()
            return [self._view(s, row) for row in rows]

    def get(self, delivery: str) -> DeliveryView | None:
        with self._db.transaction() as (s, _):
            row = s.get(WebhookDeliveryRow, delivery)
            return self._view(s, row) if row is not None else None

    @staticmethod
    def _view(s: Session, row: WebhookDeliveryRow) -> DeliveryView:
        attempts = s.scalars(
            select(WebhookAttemptRow)
            .where(WebhookAttemptRow.delivery_id == row.id)
            .order_by(WebhookAttemptRow.seq)
        ).all()
        pending = row.status == DeliveryStatus.PENDING
        return DeliveryView(
            id=row.id,
            job_id=row.job_id,
            state=row.state,
            url=row.url,
            status=row.status,
            attempts=row.attempts,
            next_at=iso(row.next_at) if pending else None,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            created_at=iso(row.created_at),
            finished_at=iso(row.finished_at),
            history=tuple(
                AttemptView(iso(a.at), a.status_code, a.duration_ms, a.error) for a in attempts
            ),
        )
