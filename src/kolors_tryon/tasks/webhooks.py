"""`tryon.webhook(delivery_id)`: one attempt of a webhook delivery, and the next message.

The delivery lives in the store; the message only says "look at it now". Waits between
attempts are delayed messages (`send_later`), never a sleeping worker. A message that
finds nothing due does nothing (a duplicate, or a stale copy the sweep re-sent); one
that finds another attempt under way looks again when that attempt's fence ends.

Workers run these messages in their delivery lane (`worker/delivery_lane.py`), not in
the Celery pool, so that receivers that hang cannot hold the pool's processes; the task
stays defined so that a `tryon.webhook` message that reaches the pool anyway (one an
older worker left on `tryon.tasks`) still runs.
"""

from __future__ import annotations

import logging

from celery import Celery

from kolors_tryon.config import defaults
from kolors_tryon.config.backoff import backoff_delay
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.pipeline import Runtime
from kolors_tryon.pipeline.webhooks import deliver
from kolors_tryon.store.outage import is_outage
from kolors_tryon.tasks.delays import send_later
from kolors_tryon.tasks.runtime import runtime_for, settings_of

log = logging.getLogger(__name__)


def register_webhook_task(app: Celery) -> None:
    """Define `tryon.webhook` on `app`."""

    @app.task(name=TaskName.WEBHOOK, shared=False)  # see tasks/definitions.py
    def webhook_task(delivery_id: str, outages: int = 0) -> str:
        return run_webhook(app, runtime_for(app), delivery_id, outages)


def run_webhook(app: Celery, rt: Runtime, delivery_id: str, outages: int = 0) -> str:
    """One `tryon.webhook` message: the due attempt, then the message that looks again.

    Raises what is neither an attempt's failure nor an outage (a bug): the delivery stays
    pending, and the sweep sends it again once its fence has passed
    (`pipeline.webhooks.lost_after`).
    """
    try:
        step = deliver(rt, delivery_id)
    except Exception as exc:
        if not is_outage(exc):
            raise
        wait = backoff_delay(
            outages, base=defaults.OUTAGE_BACKOFF_BASE, cap=settings_of(app).outage_retry_max
        )
        log.warning("webhook %s: the store does not answer; again in %.0f s", delivery_id, wait)
        send_later(
            app, TaskName.WEBHOOK, args=[delivery_id], kwargs={"outages": outages + 1}, delay=wait
        )
        return "waiting for the store"
    if step.again_in is not None:
        send_later(app, TaskName.WEBHOOK, args=[delivery_id], delay=step.again_in)
    return step.note
