"""Publishing to the broker: job events, webhooks, dead letters, raw job messages.

Every publish is persistent and, on RabbitMQ, waits for the publisher confirm
(`confirm_publish` in the transport options), so a message we think is sent is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from celery import Celery

from kolors_tryon.config.celery import topology_for
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.observe import metrics
from kolors_tryon.ops.journal import record_changes
from kolors_tryon.pipeline.webhooks import plan_webhooks
from kolors_tryon.store import JobRecord
from kolors_tryon.store.producers import BudgetReached
from kolors_tryon.store.records import iso
from kolors_tryon.tasks.outbox import publish, send_task
from kolors_tryon.tasks.runtime import runtime_for, settings_of

log = logging.getLogger(__name__)

REASON_HEADER = "x-tryon-reason"


def announce(app: Celery, records: Iterable[JobRecord]) -> None:
    """Tell the world of state changes: one event each, and the webhooks producers asked for.

    The webhook's delivery row is written before its message is sent, so a message lost
    here is re-sent by the sweep; a worker killed before the row is written leaves a
    terminal job without its delivery, which the sweep plans (`pipeline.webhooks.rescue`).
    Neither may take the state change down with it: failures are logged.
    """
    records = list(records)
    publish_events(app, records)
    if not records:
        return
    complete_batches(app, records)
    try:
        planned = plan_webhooks(runtime_for(app), records)
    except Exception:
        log.exception("could not plan the webhooks of %d job(s); the sweep will", len(records))
        return
    send_webhooks(app, planned)


def announce_overdue(app: Celery, records: Iterable[JobRecord]) -> None:
    """Report jobs just flagged overdue: a `job.overdue` event, a metric and the webhook
    (`overdue`) each. Their state did not change, so no state event is published."""
    records = list(records)
    if not records:
        return
    metrics.job_overdue(len(records))
    publish_events(app, records, kind="overdue")
    try:
        planned = plan_webhooks(runtime_for(app), records, event="overdue")
    except Exception:
        log.exception("could not plan the overdue webhooks of %d job(s)", len(records))
        return
    send_webhooks(app, planned)


def complete_batches(app: Celery, records: Iterable[JobRecord]) -> None:
    """`batch.completed` for each batch whose last job just ended (once per batch: the
    store marks it finished in a conditional UPDATE; store/batches.py)."""
    ended = {(r.producer, r.batch_id) for r in records if r.terminal and r.batch_id}
    if not ended:
        return
    store = runtime_for(app).store
    for producer, batch_id in ended:
        try:
            batch = store.batches.complete(producer, str(batch_id))
        except Exception:
            log.exception("could not check batch %s for completion", batch_id)
            continue
        if batch is None:
            continue
        log.info("batch %s of %s completed: %s", batch_id, producer, batch.counts)
        _publish_event(app, "batch.completed", batch.model_dump(mode="json"))


def announce_budgets(app: Celery, reached: Iterable[BudgetReached]) -> None:
    """A `producer.budget_reached` event and a metric per producer that reached its daily
    budget (its jobs now wait queued until the next day or a raised budget)."""
    for one in reached:
        metrics.budget_reached(one.producer)
        log.warning(
            "producer %s reached its budget of %g units for %s: its jobs wait",
            one.producer,
            one.budget,
            _day_text(one.day),
        )
        body = {
            "producer": one.producer,
            "day": _day_text(one.day),
            "budget": one.budget,
            "spent": one.spent,
            "reached_at": iso(one.reached_at),
        }
        _publish_event(app, "producer.budget_reached", body)


def _publish_event(app: Celery, routing_key: str, body: dict[str, Any]) -> None:
    """One event that is not a job record's (a batch's, a producer's) on `<ns>.events`;
    on the embedded broker nobody could hear it (see `publish_events`)."""
    settings = settings_of(app)
    if not settings.uses_rabbitmq:
        return
    exchange = topology_for(settings).events_exchange
    try:
        publish(
            app,
            body,
            exchange=exchange,
            routing_key=routing_key,
            serializer="json",
            delivery_mode=2,
            declare=[exchange],
        )
    except Exception:  # an event must never take down the change it tells of
        log.exception("could not publish a %s event", routing_key)


def _day_text(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def send_webhooks(app: Celery, delivery_ids: Iterable[str]) -> None:
    """One `tryon.webhook(delivery_id)` message per delivery due now."""
    for delivery_id in delivery_ids:
        try:
            send_task(app, TaskName.WEBHOOK, args=[delivery_id])
        except Exception:
            log.exception("could not send webhook %s; the sweep will", delivery_id)


def publish_events(app: Celery, records: Iterable[JobRecord], *, kind: str | None = None) -> None:
    """One event per state change on `<ns>.events`, routing key `job.<state>`.

    `kind` replaces the state in the routing key for events that are not a state change
    (`job.conflict`: a message with other content came under a taken job id).

    Events are notifications; the store is the source of truth. A failed publish is
    logged and does not undo the state change (in a task run, events go in its outbox
    with its other messages: `tasks/outbox.py`). The embedded broker keeps exchange
    bindings in each process's memory, so subscribers in other processes cannot see
    them: there, read the store instead (events are published only on RabbitMQ).
    """
    settings = settings_of(app)
    records = list(records)
    if kind is None:
        # Every state change is announced here once: its log line, metrics, Sentry.
        record_changes(records)
    if not records or not settings.uses_rabbitmq:
        return
    exchange = topology_for(settings).events_exchange
    try:
        for record in records:
            publish(
                app,
                record.to_json_dict(),
                exchange=exchange,
                routing_key=f"job.{kind or record.state}",
                serializer="json",
                delivery_mode=2,
                declare=[exchange],
            )
    except Exception:  # an event must never take a job down with it
        log.exception("could not publish %d job event(s)", len(records))


def dead_letter(app: Celery, body: bytes | str, reason: str, content_type: str | None) -> None:
    """Park a message that cannot be recorded as a job, with the reason in a header."""
    settings = settings_of(app)
    topology = topology_for(settings)
    payload = body.encode("utf-8") if isinstance(body, str) else body
    if not settings.uses_rabbitmq:
        log.error("dropping unrecordable message (%d bytes): %s", len(payload), reason)
        return
    publish(
        app,
        payload,
        exchange=topology.dead_letter_exchange,
        routing_key=topology.jobs_queue_name,
        content_type=content_type or "application/octet-stream",
        content_encoding="binary",
        headers={REASON_HEADER: reason},
        delivery_mode=2,
        declare=[topology.dead_letter_exchange, topology.dead_letter_queue],
    )
    log.warning("dead-lettered a message (%d bytes): %s", len(payload), reason)
