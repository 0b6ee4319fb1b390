"""Webhooks' contract offline: the job fields, the intake guard, signatures, the schedule."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
import standardwebhooks
from jobs_images import b64, jpeg, png

from kolors_tryon.config import Settings, SettingsError, load_settings
from kolors_tryon.config.backoff import scheduled_delay
from kolors_tryon.config.defaults import WEBHOOK_SCHEDULE
from kolors_tryon.jobs import JobRejected, ValidationOptions, validate_job
from kolors_tryon.jobs.validation import DEFAULT_OPTIONS
from kolors_tryon.pipeline.webhooks import generate_secret, sign

HUMAN = b64(png())
CLOTH = b64(jpeg())


pytestmark = pytest.mark.usefixtures("clean_env")


def _job(**fields: Any) -> dict[str, Any]:
    return {"job_id": "w1", "human_image": HUMAN, "cloth_image": CLOTH, **fields}


def _rejection(raw: Any, options: ValidationOptions = DEFAULT_OPTIONS) -> JobRejected:
    with pytest.raises(JobRejected) as caught:
        validate_job(raw, options)
    return caught.value


# --- the job message's webhook fields -----------------------------------------------------
def test_webhook_events_default_to_none_and_keep_order_without_repeats() -> None:
    """No webhook_events: None (the terminal states); given: kept in order, once each."""
    assert validate_job(_job()).message.webhook_events is None
    job = validate_job(_job(webhook_events=["submitted", "succeeded", "submitted"]))
    assert [str(e) for e in job.message.webhook_events or []] == ["submitted", "succeeded"]


@pytest.mark.parametrize(
    ("events", "field", "rule"),
    [
        (["nope"], "webhook_events[0]", "enum"),
        ([], "webhook_events", "min_items"),
        ("succeeded", "webhook_events", "type"),
    ],
    ids=["unknown-state", "empty", "not-a-list"],
)
def test_bad_webhook_events_are_refused(events: object, field: str, rule: str) -> None:
    """webhook_events must be a non-empty list of job states."""
    problems = _rejection(_job(webhook_events=events)).problems
    assert [(p.field, p.rule) for p in problems] == [(field, rule)]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://localhost/hook",
    ],
    ids=["loopback", "private", "link-local-metadata", "loopback-v6", "localhost-name"],
)
def test_private_webhook_targets_are_refused_unless_allowed(url: str) -> None:
    """A callback_url on a private, loopback or link-local host is rejected (field, rule)."""
    rejection = _rejection(_job(callback_url=url))
    assert [(p.field, p.rule) for p in rejection.problems] == [("callback_url", "private_address")]
    assert "TRYON_WEBHOOK_ALLOW_PRIVATE" in rejection.reason
    assert rejection.callback_url is None  # no webhook goes to a refused target
    allowed = validate_job(_job(callback_url=url), ValidationOptions(allow_private_webhooks=True))
    assert allowed.message.callback_url == url


def test_unresolvable_webhook_host_is_accepted_at_intake() -> None:
    """A name that does not resolve now is accepted: delivery checks again, later."""
    job = validate_job(_job(callback_url="https://hooks.invalid/tryon"))
    assert job.message.callback_url == "https://hooks.invalid/tryon"


def test_rejected_job_keeps_its_valid_webhook_target() -> None:
    """A job rejected for its image still carries its callback_url and webhook_events."""
    rejection = _rejection(
        _job(
            cloth_image="abc", callback_url=" https://hooks.invalid/t ", webhook_events=["rejected"]
        )
    )
    assert rejection.callback_url == "https://hooks.invalid/t"
    assert [str(e) for e in rejection.webhook_events or []] == ["rejected"]


def test_rejected_job_with_bad_events_keeps_its_url_with_default_events() -> None:
    """Broken webhook_events do not lose the target: the rejection goes to the default states."""
    rejection = _rejection(_job(callback_url="https://hooks.invalid/t", webhook_events=["x"]))
    assert rejection.callback_url == "https://hooks.invalid/t"
    assert rejection.webhook_events is None


# --- signatures -----------------------------------------------------------------------------
def test_signature_verifies_with_the_standardwebhooks_library() -> None:
    """Our webhook-signature verifies with the `standardwebhooks` PyPI package."""
    secret = generate_secret()
    body = json.dumps({"job_id": "j", "state": "succeeded"})
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign([secret], "msg_1", timestamp, body),
    }
    assert standardwebhooks.Webhook(secret).verify(body, headers) == json.loads(body)


def test_every_listed_secret_signs_so_receivers_with_either_verify() -> None:
    """Rotation: two secrets give two v1 signatures; a receiver with either one verifies."""
    new, old = generate_secret(), generate_secret()
    body, timestamp = '{"a":1}', int(time.time())
    signature = sign([new, old], "msg_2", timestamp, body)
    assert signature.count("v1,") == 2
    headers = {"webhook-id": "msg_2", "webhook-timestamp": str(timestamp)}
    for secret in (new, old):
        standardwebhooks.Webhook(secret).verify(body, {**headers, "webhook-signature": signature})
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(generate_secret()).verify(
            body, {**headers, "webhook-signature": signature}
        )


def test_generated_secrets_have_the_whsec_form() -> None:
    """A generated secret is whsec_ + Base64 of 32 random bytes, accepted by Settings."""
    secret = generate_secret()
    assert secret.startswith("whsec_") and secret != generate_secret()
    assert Settings.model_validate({"webhook_secret": secret}).webhook_secret[0]


# --- settings -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRYON_WEBHOOK_SECRET", "not-a-whsec-secret"),
        ("TRYON_WEBHOOK_SECRET", "whsec_c2hvcnQ="),
        ("TRYON_WEBHOOK_SCHEDULE", "5,3"),
        ("TRYON_WEBHOOK_SCHEDULE", "0,5"),
    ],
    ids=["no-prefix", "too-short", "decreasing", "zero"],
)
def test_bad_webhook_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """A wrong webhook setting stops start-up naming it; a secret's value is never echoed."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert variable in str(caught.value)
    if "SECRET" in variable:
        assert value not in str(caught.value)


def test_webhook_settings_are_read_from_comma_separated_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TRYON_WEBHOOK_SECRET and TRYON_WEBHOOK_SCHEDULE take comma-separated lists."""
    first, second = generate_secret(), generate_secret()
    monkeypatch.setenv("TRYON_WEBHOOK_SECRET", f"{first}, {second}")
    monkeypatch.setenv("TRYON_WEBHOOK_SCHEDULE", "1,2,3.5")
    settings = load_settings()
    assert [s.get_secret_value() for s in settings.webhook_secret] == [first, second]
    assert settings.webhook_schedule == [1.0, 2.0, 3.5]
    assert first not in repr(settings)


# --- the schedule -----------------------------------------------------------------------------
def test_default_schedule_is_the_standard_webhooks_example() -> None:
    """5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h after the first attempt."""
    minutes, hours = 60.0, 3600.0
    expected = [5.0, 5 * minutes, 30 * minutes, 2 * hours, 5 * hours, 10 * hours, 14 * hours]
    assert list(WEBHOOK_SCHEDULE) == [*expected, 20 * hours, 24 * hours]
    assert Settings.model_validate({}).webhook_schedule == list(WEBHOOK_SCHEDULE)


@pytest.mark.parametrize(
    ("failures", "gap"),
    [(1, 5.0), (2, 295.0), (3, 1500.0), (9, 4 * 3600.0)],
    ids=["first", "second", "third", "last"],
)
def test_scheduled_delay_is_the_gap_to_the_next_offset_jittered(failures: int, gap: float) -> None:
    """The wait after failure n is offset[n] - offset[n-1], spread by at most 10 %."""
    rng = random.Random(1)
    for _ in range(50):
        delay = scheduled_delay(
            failures, WEBHOOK_SCHEDULE, jitter=0.1, retry_after_cap=86400, rng=rng
        )
        assert delay is not None and 0.9 * gap <= delay <= 1.1 * gap


def test_scheduled_delay_ends_after_the_last_offset_and_honours_retry_after() -> None:
    """None once the schedule is spent; a Retry-After is a floor, bounded by its cap."""
    schedule = (1.0, 2.0)
    assert scheduled_delay(3, schedule, jitter=0.1, retry_after_cap=60) is None
    assert scheduled_delay(1, schedule, jitter=0.0, retry_after=30, retry_after_cap=60) == 30
    assert scheduled_delay(1, schedule, jitter=0.0, retry_after=999, retry_after_cap=60) == 60


def test_webhook_events_are_the_job_states_overdue_and_reviewed() -> None:
    """A producer may ask for exactly the store's job states, in order, `overdue` and
    `reviewed`; by default the terminal ones and `overdue`, the same in jobs/ and in the
    store."""
    from kolors_tryon.jobs.enums import DEFAULT_WEBHOOK_EVENTS, WebhookEvent
    from kolors_tryon.store import TERMINAL_STATES, JobState
    from kolors_tryon.store.webhooks import DEFAULT_EVENTS, OVERDUE_EVENT, REVIEWED_EVENT

    assert [e.value for e in WebhookEvent] == [s.value for s in JobState] + [
        OVERDUE_EVENT,
        REVIEWED_EVENT,
    ]
    terminal = {str(s) for s in TERMINAL_STATES}
    assert {e.value for e in DEFAULT_WEBHOOK_EVENTS} == terminal | {OVERDUE_EVENT}
    assert {e.value for e in DEFAULT_WEBHOOK_EVENTS} == DEFAULT_EVENTS


def test_validation_options_carry_the_webhook_setting() -> None:
    """TRYON_WEBHOOK_ALLOW_PRIVATE reaches intake's checks (the worker's and the web door's)."""
    allowed = Settings.model_validate({"webhook_allow_private": True})
    assert ValidationOptions.from_settings(allowed).allow_private_webhooks
    assert not ValidationOptions.from_settings(Settings.model_validate({})).allow_private_webhooks
