"""A person's verdict on a job's result (the review console's approve and reject).

Why it looks like this:
- One conditional UPDATE gives the verdict: only a `succeeded` job the reviewer may see,
  and only once. Two reviewers clicking at once make one verdict, one event and one
  webhook; the second is told who was first.
- The webhook delivery row is written in the same transaction, as every delivery is
  planned before its message is sent (`store.webhooks`): a lost message is re-sent by
  the sweep. Its body is the job record with the verdict beside it, and only jobs whose
  producer asked for `reviewed` in `webhook_events` get one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import sessionmaker

from kolors_tryon.store.clock import StoreClock
from kolors_tryon.store.console_reads import ProducerScope
from kolors_tryon.store.records import JobRecord, iso, record_from_row
from kolors_tryon.store.states import JobState
from kolors_tryon.store.tables import JobRow, WebhookDeliveryRow
from kolors_tryon.store.webhooks import (
    REVIEWED_EVENT,
    DeliveryStatus,
    delivery_id,
    url_hash,
    wanted_events,
)

__all__ = ["Reviewed", "Verdict", "give_verdict", "reviewed_body"]


class Verdict(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Reviewed:
    """The outcome of a verdict: `given` False when another one was there first (or the
    job is not `succeeded`); `delivery` is the webhook to send, if the producer wants it."""

    given: bool
    record: JobRecord
    body: dict[str, Any]
    delivery: str | None = None


def reviewed_body(
    record: JobRecord, verdict: str, by: str | None, at: str | None
) -> dict[str, Any]:
    """The body of the `job.reviewed` event and webhook: the record and the verdict."""
    return {**record.to_json_dict(), "review": {"state": verdict, "by": by, "at": at}}


def give_verdict(
    engine: Engine, scope: ProducerScope, job_id: str, verdict: Verdict, by: str
) -> Reviewed | None:
    """Record `verdict` on a succeeded job the scope may see; None when it cannot see it."""
    sessions = sessionmaker(engine, expire_on_commit=False)
    clock = StoreClock(engine, None)
    with sessions() as s, s.begin():
        now = clock.now_in(s)
        moved = s.execute(
            update(JobRow)
            .where(
                JobRow.job_id == job_id,
                JobRow.state == JobState.SUCCEEDED,
                JobRow.review_state.is_(None),
                scope.allows(),
            )
            .values(review_state=str(verdict), reviewed_by=by, reviewed_at=now)
            .execution_options(synchronize_session=False)
        )
        row = s.scalar(select(JobRow).where(JobRow.job_id == job_id, scope.allows()))
        if row is None:
            return None
        record = record_from_row(row)
        body = reviewed_body(record, row.review_state or "", row.reviewed_by, iso(row.reviewed_at))
        if not int(getattr(moved, "rowcount", 0)):
            return Reviewed(False, record, body)
        planned = None
        if row.callback_url and REVIEWED_EVENT in wanted_events(row.webhook_events):
            planned = delivery_id(job_id, REVIEWED_EVENT, 0)
            s.add(
                WebhookDeliveryRow(
                    id=planned,
                    job_id=job_id,
                    state=REVIEWED_EVENT,
                    round=0,
                    url=row.callback_url,
                    url_hash=url_hash(row.callback_url),
                    body=json.dumps(body, separators=(",", ":"), sort_keys=True),
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    next_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
        return Reviewed(True, record, body, planned)
