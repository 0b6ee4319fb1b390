"""Logging and Sentry for worker processes, with secrets and photos scrubbed."""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.logging import LoggingIntegration

from kolors_tryon.config import Settings
from kolors_tryon.kling import redact
from kolors_tryon.observe.context import current_job

log = logging.getLogger(__name__)


def scrub_event(event: Any, _hint: Any = None) -> Any:
    """Sentry `before_send`: tag the job, then redact every string (tokens, Base64
    images, signed URLs), breadcrumbs included (they travel inside the event)."""
    if isinstance(event, dict):
        tags = event.get("tags")
        tags = dict(tags) if isinstance(tags, dict) else {}
        for key, value in current_job().items():
            if key in _TAGS:
                tags.setdefault(key, value)
        if tags:
            event = {**event, "tags": tags}
        crumbs = event.get("breadcrumbs")
        values = crumbs.get("values") if isinstance(crumbs, dict) else None
        if isinstance(values, list):
            kept = [scrub_breadcrumb(crumb) for crumb in values]
            event = {**event, "breadcrumbs": {**crumbs, "values": kept}}
    return _scrub(event)


# The job's ids an event is tagged with (searchable in Sentry; none of them is personal).
_TAGS = ("job_id", "kling_task_id", "request_id")


# Parts of an HTTP breadcrumb that hold a URL's query or fragment on their own: a signed
# URL's credential, with nothing around it to say it is one. They are dropped whole.
_BREADCRUMB_URL_PARTS = ("http.query", "http.fragment")


def scrub_breadcrumb(crumb: Any, _hint: Any = None) -> Any:
    """Sentry `before_breadcrumb`: no query strings, and every string redacted.

    The SDK records every HTTP request as a breadcrumb (the Kling client's, downloads of
    result images with their signed URLs) and sends them with the next event.
    """
    if isinstance(crumb, dict):
        data = crumb.get("data")
        if isinstance(data, dict):
            crumb = {
                **crumb,
                "data": {k: v for k, v in data.items() if k not in _BREADCRUMB_URL_PARTS},
            }
    return _scrub(crumb)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def init_reporting(settings: Settings) -> None:
    """Configure log levels and, when a DSN is set, Sentry (no PII, no request bodies)."""
    logging.getLogger("kolors_tryon").setLevel(settings.log_level)
    if settings.sentry_dsn is None:
        return
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        send_default_pii=False,
        max_request_body_size="never",
        include_local_variables=False,
        before_send=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
        before_send_transaction=scrub_event,
        integrations=[
            # ERROR lines are events (a parked message, an account pause); INFO and up
            # are breadcrumbs. Both pass the scrubbers above.
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
            CeleryIntegration(monitor_beat_tasks=False),
        ],
    )
    log.info("error reporting to Sentry is on")
