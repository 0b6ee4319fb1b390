"""Kling error classification: business code first, HTTP status as the fallback."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from kolors_tryon.kling import (
    AccountUnavailableError,
    ConcurrencyLimitError,
    ConfigurationError,
    EndpointError,
    InvalidRequestError,
    KlingConnectionError,
    KlingError,
    KlingTimeoutError,
    NotFoundError,
    PermanentKlingError,
    PermissionDeniedError,
    PolicyViolationError,
    RateLimitedError,
    RetryableKlingError,
    ServerError,
    TokenError,
)
from kolors_tryon.kling.errors import error_from_response, parse_retry_after

# Every row of the KLING_API.md error table: (HTTP status, code, class, retryable).
CODE_TABLE = [
    (401, 1000, ConfigurationError, False),
    (401, 1001, ConfigurationError, False),
    (401, 1002, ConfigurationError, False),
    (401, 1003, TokenError, False),
    (401, 1004, TokenError, False),
    (429, 1100, AccountUnavailableError, True),
    (429, 1101, AccountUnavailableError, True),
    (429, 1102, AccountUnavailableError, True),
    (403, 1103, PermissionDeniedError, False),
    (400, 1200, InvalidRequestError, False),
    (400, 1201, InvalidRequestError, False),
    (404, 1202, EndpointError, False),
    (404, 1203, NotFoundError, False),
    (400, 1300, PolicyViolationError, False),
    (400, 1301, PolicyViolationError, False),
    (429, 1302, RateLimitedError, True),
    (429, 1303, ConcurrencyLimitError, True),
    (429, 1304, ConfigurationError, False),
    (500, 5000, ServerError, True),
    (503, 5001, ServerError, True),
    (504, 5002, ServerError, True),
]


@pytest.mark.parametrize(("status", "code", "cls", "retryable"), CODE_TABLE)
def test_code_maps_to_class(status: int, code: int, cls: type[KlingError], retryable: bool) -> None:
    """Each documented business code yields exactly its class and retryable flag."""
    err = error_from_response(status, code, "msg", "req-1", None)
    assert type(err) is cls
    assert err.retryable is retryable
    assert isinstance(err, RetryableKlingError if retryable else PermanentKlingError)
    assert (err.http_status, err.code, err.request_id) == (status, code, "req-1")


@pytest.mark.parametrize(("status", "code", "cls", "retryable"), CODE_TABLE)
def test_code_wins_over_http_status(
    status: int, code: int, cls: type[KlingError], retryable: bool
) -> None:
    """The business code decides even when the HTTP status disagrees (e.g. 200 or 429)."""
    assert type(error_from_response(200, code, "", None, None)) is cls


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (429, RateLimitedError),
        (401, ConfigurationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (400, InvalidRequestError),
        (422, InvalidRequestError),
        (200, ServerError),
        (None, ServerError),
    ],
)
def test_unknown_code_falls_back_on_status(status: int | None, cls: type[KlingError]) -> None:
    """An unknown or missing code is classified by the HTTP status alone."""
    assert type(error_from_response(status, 9999, "", None, None)) is cls
    assert type(error_from_response(status, None, "", None, None)) is cls


@pytest.mark.parametrize(
    ("err", "ambiguous"),
    [
        (ServerError("x"), True),
        (KlingConnectionError("x", request_sent=True), True),
        (KlingTimeoutError("x", request_sent=True), True),
        (KlingConnectionError("x", request_sent=False), False),
        (KlingTimeoutError("x", request_sent=False), False),
        (ConcurrencyLimitError("x"), False),
        (RateLimitedError("x"), False),
        (AccountUnavailableError("x"), False),
        (InvalidRequestError("x"), False),
        (TokenError("x"), False),
    ],
)
def test_ambiguous_only_when_a_create_may_have_landed(err: KlingError, ambiguous: bool) -> None:
    """Only a sent-but-unanswered request or a server error leaves a create ambiguous."""
    assert err.ambiguous is ambiguous


def test_str_names_code_status_and_request_id() -> None:
    """str(err) reads like "Kling 1303 (HTTP 429): ... [request_id=...]"."""
    err = error_from_response(429, 1303, "concurrency over the resource-pack limit", "r-9", 1.0)
    assert str(err) == (
        "Kling 1303 (HTTP 429): concurrency over the resource-pack limit [request_id=r-9]"
    )
    assert err.retry_after == 1.0


def test_message_is_redacted_and_truncated() -> None:
    """Tokens, Base64 and huge proxy pages never reach the message or str()."""
    secret = "Bearer sk-abcdefghijklmnop " + "QUJD" * 500 + " <html>" + "x " * 2000
    err = error_from_response(502, None, secret, None, None)
    text = str(err)
    assert "sk-abcdefghijklmnop" not in text
    assert "QUJDQUJD" not in text
    assert len(err.message) <= 300


def test_connection_error_str_says_whether_sent() -> None:
    """A network error's text tells whether the request may have reached the API."""
    assert "may have been sent" in str(KlingConnectionError("reset", request_sent=True))
    assert "not sent" in str(KlingTimeoutError("connect timeout", request_sent=False))


def test_errors_survive_pickling() -> None:
    """Errors keep their fields across process boundaries (Celery, multiprocessing)."""
    err = KlingConnectionError("reset", request_sent=False, request_id="r")
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert type(copy) is KlingConnectionError
    assert (copy.request_sent, copy.request_id, copy.message) == (False, "r", "reset")
    rate = pickle.loads(pickle.dumps(error_from_response(429, 1302, "slow", "q", 2.0)))  # noqa: S301
    assert (type(rate), rate.code, rate.retry_after, str(rate)) == (
        RateLimitedError,
        1302,
        2.0,
        "Kling 1302 (HTTP 429): slow [request_id=q]",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("soon", None),
        ("nan", None),
    ],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    """Delta-seconds parse to floats; garbage parses to None rather than raising."""
    assert parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    """An HTTP-date becomes the seconds between now and that date (never negative)."""
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    earlier = format_datetime(datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now=now) == 30.0
    assert parse_retry_after(earlier, now=now) == 0.0
