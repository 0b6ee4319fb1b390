"""Webhooks to producers: plan a delivery per state change, sign it, make one attempt.

Celery-free, like the rest of the pipeline: `deliver` makes at most one POST and returns
when to look again; the task (`tryon.webhook`) sends that later message, so no worker
ever sleeps between attempts.

The contract is Standard Webhooks (standardwebhooks.com), so producers verify with any
of its libraries:
- `webhook-id`: the delivery's id, derived from (job, state, round), the same on every
  attempt and replay: the receiver's idempotency key;
- `webhook-timestamp`: Unix seconds of this attempt (the database's clock);
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per
  secret, space-separated. Every secret of `TRYON_WEBHOOK_SECRET` signs, so a rotation
  is: list the new secret first next to the old one, move the receivers, drop the old.
  Without the setting one secret is generated once and kept in the store.
- 2xx is success; anything else (3xx included: redirects are not followed) is a failure
  retried on the schedule; 410 Gone stops every delivery to that URL; Retry-After is
  honoured on 429, 502, 503 and 504.

The body is the job record exactly as events carry it (URLs of results, never image
data). Neither the secret, a signature, nor the URL's query ever reaches a log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets as random_secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import requests

from kolors_tryon.config import Settings, defaults
from kolors_tryon.config.backoff import scheduled_delay
from kolors_tryon.config.http_deadline import DeadlineExceeded, call_deadline
from kolors_tryon.jobs.models import MAX_CALLBACK_URL_LENGTH
from kolors_tryon.jobs.preflight import checked_address, pinned_session
from kolors_tryon.jobs.urls import UrlProblem, check_http_url, redact_url
from kolors_tryon.kling.errors import parse_retry_after
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.store import JobRecord, JobStore
from kolors_tryon.store.webhooks import DeliveryBusy, DeliveryClaim, DeliveryStatus

log = logging.getLogger(__name__)

# The store's name of the generated secret (the callback secret can live beside it).
SECRET_NAME = "webhook_secret"  # noqa: S105 - a name, not a secret
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix
USER_AGENT = "kolors-tryon-webhooks/1"
# Answers whose Retry-After is honoured (Standard Webhooks: throttling and overload).
RETRY_AFTER_STATUSES = frozenset({429, 502, 503, 504})
GONE = 410
_HINT = "refused unless TRYON_WEBHOOK_ALLOW_PRIVATE=true"


@dataclass(frozen=True)
class WebhookStep:
    """What the task does after one look at a delivery: look again in `again_in` s, or not."""

    again_in: float | None = None
    note: str = ""


@dataclass(frozen=True)
class _Answer:
    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after: float | None = None


# ---------------------------------------------------------------- secrets -------------
def generate_secret() -> str:
    """A new `whsec_` secret: Base64 of 32 random bytes (the spec asks for 24 to 64)."""
    key = random_secrets.token_bytes(defaults.WEBHOOK_SECRET_BYTES)
    return SECRET_PREFIX + base64.b64encode(key).decode()


def webhook_secrets(settings: Settings, store: JobStore) -> list[str]:
    """The signing secrets: the configured ones, or the one generated and kept in the store."""
    configured = [secret.get_secret_value() for secret in settings.webhook_secret]
    return configured or [store.secrets.get(SECRET_NAME, generate_secret)]


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header: one `v1,<base64>` per secret, space-separated."""
    content = f"{msg_id}.{timestamp}.{body}".encode()
    signatures = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
        digest = hmac.new(key, content, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode())
    return " ".join(signatures)


# ---------------------------------------------------------------- planning ------------
def plan_webhooks(rt: Runtime, records: Iterable[JobRecord], event: str | None = None) -> list[str]:
    """Durable deliveries for these state changes (or for `event`, e.g. `overdue`);
    returns the ids to attempt now."""
    return rt.store.webhooks.plan(records, event)


def attempt_hold(settings: Settings) -> float:
    """How long one attempt's fence lasts: its whole-call deadline and some slack.

    The POST ends by that deadline however slowly the receiver drips its answer, so an
    attempt is always recorded inside its fence and no second copy of the delivery can
    start while it runs.
    """
    return settings.webhook_deadline + defaults.WEBHOOK_ATTEMPT_SLACK


def lost_after(settings: Settings) -> float:
    """How long past due a pending delivery must be before the sweep calls its message lost.

    Longer than an attempt's fence and a sweep's period, so a message that is merely
    late (a busy worker) is not doubled; a doubled one is harmless anyway (fenced).
    """
    return attempt_hold(settings) + settings.sweep_interval


def rescue(rt: Runtime) -> list[str]:
    """The sweep's part: deliveries whose message was lost, and deliveries never planned.

    Returns the ids to send a `tryon.webhook` message for.
    """
    missing = rt.store.webhooks.missing(window=defaults.WEBHOOK_RESCUE_WINDOW)
    planned = plan_webhooks(rt, missing)
    if planned:
        log.warning("planned %d webhook delivery(ies) a stopped worker had left", len(planned))
    lost = rt.store.webhooks.lost(older_than=lost_after(rt.settings))
    return list(dict.fromkeys([*planned, *lost]))


# ---------------------------------------------------------------- delivering ----------
def deliver(rt: Runtime, delivery_id: str) -> WebhookStep:
    """Make the due attempt of one delivery, record it, and say when to look again."""
    claim = rt.store.webhooks.claim(delivery_id, hold=attempt_hold(rt.settings))
    if claim is None:
        return WebhookStep(note="nothing due")
    if isinstance(claim, DeliveryBusy):
        return WebhookStep(again_in=claim.wait, note="another attempt is under way")
    shown = redact_url(claim.url)
    if rt.store.webhooks.url_is_gone(claim.url):
        rt.store.webhooks.record_attempt(
            claim,
            status=DeliveryStatus.SKIPPED,
            status_code=None,
            duration_ms=0,
            error="not attempted: the URL answered 410 Gone to an earlier delivery",
            attempted=False,
        )
        log.info("webhook %s for job %s skipped: %s is gone", claim.id, claim.job_id, shown)
        return WebhookStep(note="skipped: URL gone")
    answer = _post(rt, claim)
    code = answer.status_code
    retry_in: float | None = None
    if code is not None and 200 <= code < 300:
        status = DeliveryStatus.DELIVERED
    elif code == GONE:
        status = DeliveryStatus.GONE
        log.warning("webhook URL %s answered 410 Gone: no more deliveries to it", shown)
    else:
        retry_in = scheduled_delay(
            claim.attempts + 1,
            rt.settings.webhook_schedule,
            jitter=defaults.WEBHOOK_JITTER,
            retry_after=answer.retry_after if code in RETRY_AFTER_STATUSES else None,
            retry_after_cap=defaults.WEBHOOK_RETRY_AFTER_CAP,
            rng=rt.rng,
        )
        status = DeliveryStatus.PENDING if retry_in is not None else DeliveryStatus.FAILED
    recorded = rt.store.webhooks.record_attempt(
        claim,
        status=status,
        status_code=code,
        duration_ms=answer.duration_ms,
        error=answer.error,
        retry_in=retry_in,
    )
    what = f"HTTP {code}" if code is not None else (answer.error or "no answer")
    if not recorded:
        log.warning("webhook %s: attempt outlived its fence; its outcome was not kept", claim.id)
        return WebhookStep(note="claim lost")
    if status is DeliveryStatus.FAILED:
        log.error(
            "webhook %s for job %s (%s) to %s failed after %d attempts; last: %s "
            "(replay: tryon webhooks replay %s)",
            claim.id,
            claim.job_id,
            claim.state,
            shown,
            claim.attempts + 1,
            what,
            claim.id,
        )
    elif status is DeliveryStatus.PENDING:
        log.info("webhook %s to %s: %s; next attempt in %.0f s", claim.id, shown, what, retry_in)
    return WebhookStep(again_in=retry_in, note=f"{status}: {what}")


def _post(rt: Runtime, claim: DeliveryClaim) -> _Answer:
    """One POST of the delivery to the address checked now (DNS may have changed)."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    settings = rt.settings
    try:
        parts = check_http_url(claim.url, max_length=MAX_CALLBACK_URL_LENGTH)
        pinned = None if settings.webhook_allow_private else checked_address(parts, hint=_HINT)
    except UrlProblem as exc:
        return _Answer(None, f"refused: {exc.message}", elapsed())
    timestamp = int(rt.store.now())
    signature = sign(webhook_secrets(settings, rt.store), claim.id, timestamp, claim.body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": claim.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    try:
        with (
            call_deadline(settings.webhook_deadline) as deadline,
            pinned_session(claim.url, parts, pinned) as (session, target, host),
            session.post(
                target,
                data=claim.body.encode("utf-8"),
                headers={**headers, **host},
                timeout=deadline.timeouts(settings.http_connect_timeout, settings.webhook_timeout),
                allow_redirects=False,
                stream=True,  # the answer's body is never read: only its status counts
            ) as response,
        ):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return _Answer(response.status_code, None, elapsed(), retry_after)
    except requests.RequestException as exc:
        return _Answer(None, _failure(exc), elapsed())


def _failure(exc: requests.RequestException) -> str:
    """What went wrong, in words; never `exc` itself (requests quotes the whole URL)."""
    if isinstance(exc, DeadlineExceeded):
        return "no complete answer within the attempt's deadline"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake or certificate check failed"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect, or the connection broke"
    return f"request failed ({type(exc).__name__})"
