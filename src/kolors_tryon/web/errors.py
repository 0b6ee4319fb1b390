"""Every error of `tryon web`, answered from one table: error class -> status, code, message.

A route raises (the door's own errors below, `JobNotFound`, `JobRejected`, `SlotsFull`...)
and `handle_error`, the app's one exception handler, answers from `ERRORS`; a batch reads
the same table for each refused item (`error_answer`). The body is always
`{"error": {"code": "...", "message": "..."}}` (`bodies.Error`), an invalid job's adds
`job_id` and `problems` (`bodies.InvalidJob`). Every message passes through
`kolors_tryon.kling.redact`, so no token, key or Base64 run is ever echoed back.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kolors_tryon.config import defaults
from kolors_tryon.errors import BatchNotFound, JobNotFound, TryonError
from kolors_tryon.jobs import JobRejected
from kolors_tryon.kling import redact
from kolors_tryon.pipeline.lifecycle import RetryRefused
from kolors_tryon.store.listing import BadCursor
from kolors_tryon.web.bodies import Error, ErrorDetail, InvalidJob, InvalidJobDetail, Problem
from kolors_tryon.web.slots import SlotsFull

__all__ = [
    "ERRORS",
    "BodyTooLarge",
    "BrokerUnavailable",
    "CallbackRefused",
    "ErrorAnswer",
    "ErrorKind",
    "IntakeOff",
    "KeyRefused",
    "NotJson",
    "StoreUnavailable",
    "UnknownCallbackUrl",
    "error_answer",
    "handle_error",
]

T = TypeVar("T")
log = logging.getLogger(__name__)

_MAX_MESSAGE: Final = 2000


# ------------------------------------------------------------------- the door's errors --
class IntakeOff(TryonError):
    """No API key is configured: the routes that need one are off."""


class KeyRefused(TryonError):
    """No bearer key, or not one of ours."""


class NotJson(TryonError):
    """The request's Content-Type is not JSON."""


class BodyTooLarge(TryonError):
    """The request body is larger than its cap (`limit` bytes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class ListingRefused(TryonError):
    """A query parameter of `GET /v1/jobs` that cannot be read; the message names it."""


class StoreUnavailable(TryonError):
    """The job store did not answer; raised with a message of its own where it differs."""


class BrokerUnavailable(TryonError):
    """The broker did not take the message; raised with a message of its own where it differs."""


class CallbackRefused(TryonError):
    """A callback whose body is not a task object of this URL's job; says why."""


class UnknownCallbackUrl(TryonError):
    """A callback with a wrong token: answered like any URL we do not serve."""


# ------------------------------------------------------------------- the table ----------
Of = Callable[[Any], Any]


@dataclass(frozen=True)
class ErrorKind:
    """How one error class is answered. Each value is fixed, or read from the exception."""

    status: int | Of
    code: str | Of
    message: str | Of
    headers: Mapping[str, str] | Of | None = None
    # The `error` object; most errors have code and message only.
    detail: Callable[[Any, str, str], ErrorDetail | InvalidJobDetail] = field(
        default=lambda exc, code, message: ErrorDetail(code=code, message=message)
    )


def _of(value: Any, exc: BaseException) -> Any:
    return value(exc) if callable(value) else value


def _own_words_or(default: str) -> Of:
    """The exception's message if it was raised with one, else `default`."""
    return lambda exc: str(exc) or default


def _clean(text: str) -> str:
    text = redact(text)
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def _rejection_detail(rejection: JobRejected, code: str, message: str) -> InvalidJobDetail:
    """Every problem of an invalid job, each naming its field and rule."""
    problems = [
        Problem(field=_clean(p.field), rule=p.rule, message=_clean(p.message))
        for p in rejection.problems
    ]
    return InvalidJobDetail(
        code=JobRejected.code, message=message, job_id=rejection.job_id, problems=problems
    )


# The `code` of an error answered by status alone (Starlette's own: routing, mostly).
_ROUTING_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_job",
    500: "internal",
    503: "unavailable",
}


def _routing_message(exc: HTTPException) -> str:
    if isinstance(exc.detail, str) and exc.detail:
        return exc.detail
    try:
        return http.HTTPStatus(exc.status_code).phrase
    except ValueError:
        return "error"


_RETRY_LATER: Final = {"Retry-After": str(defaults.WEB_BUSY_RETRY_AFTER)}

# The one table. An exception is answered by the first of its classes (its MRO) listed.
ERRORS: Final[Mapping[type[BaseException], ErrorKind]] = {
    JobRejected: ErrorKind(422, JobRejected.code, lambda e: e.reason, detail=_rejection_detail),
    JobNotFound: ErrorKind(404, "not_found", "no job with this id"),
    RetryRefused: ErrorKind(409, "not_retryable", str),
    ListingRefused: ErrorKind(422, "bad_query", str),
    BadCursor: ErrorKind(422, "bad_query", str),
    BatchNotFound: ErrorKind(404, "not_found", "no batch with this id"),
    KeyRefused: ErrorKind(
        401,
        "unauthorized",
        "a valid API key is required in the Authorization header (Bearer scheme)",
        headers={"WWW-Authenticate": 'Bearer realm="tryon"'},
    ),
    NotJson: ErrorKind(415, "unsupported_media_type", "send the job as application/json"),
    BodyTooLarge: ErrorKind(
        413,
        "body_too_large",
        lambda e: f"the request body is larger than {e.limit} bytes",
        detail=lambda e, code, message: ErrorDetail(
            code=code, message=message, limit_bytes=e.limit
        ),
    ),
    IntakeOff: ErrorKind(503, "intake_off", "HTTP intake is off: set TRYON_API_KEYS"),
    SlotsFull: ErrorKind(
        503,
        "preflight_busy",
        lambda e: (
            f"every URL preflight slot is busy ({e.size}); "
            f"try again in {defaults.WEB_BUSY_RETRY_AFTER} s"
        ),
        headers=_RETRY_LATER,
    ),
    BrokerUnavailable: ErrorKind(
        503,
        "broker_unavailable",
        _own_words_or("the job could not be queued: the broker is unavailable"),
        headers=_RETRY_LATER,
    ),
    StoreUnavailable: ErrorKind(
        503, "store_unavailable", _own_words_or("the job store is unavailable")
    ),
    CallbackRefused: ErrorKind(400, "invalid_callback", str),
    UnknownCallbackUrl: ErrorKind(404, "not_found", "Not Found"),
    HTTPException: ErrorKind(
        lambda e: e.status_code,
        lambda e: _ROUTING_CODES.get(e.status_code, "error"),
        _routing_message,
        headers=lambda e: e.headers,
    ),
    # Anything else is a bug: no detail (the log has the type, never the input).
    Exception: ErrorKind(500, "internal", "internal error; it has been logged"),
}


@dataclass(frozen=True)
class ErrorAnswer:
    """An error's status, body and headers, as the table gives them."""

    status: int
    body: Error | InvalidJob
    headers: Mapping[str, str] | None

    @property
    def detail(self) -> ErrorDetail | InvalidJobDetail:
        return self.body.error

    def response(self) -> JSONResponse:
        return JSONResponse(self.body.json_body(), status_code=self.status, headers=self.headers)


def error_answer(exc: BaseException) -> ErrorAnswer:
    """The answer the table gives `exc`."""
    kind = next(ERRORS[cls] for cls in type(exc).__mro__ if cls in ERRORS)
    code: str = _of(kind.code, exc)
    detail = kind.detail(exc, code, _clean(_of(kind.message, exc)))
    body = InvalidJob(error=detail) if isinstance(detail, InvalidJobDetail) else Error(error=detail)
    return ErrorAnswer(_of(kind.status, exc), body, _of(kind.headers, exc))


def handle_error(request: Request, exc: Exception) -> Response:
    """The app's exception handler, for every error: the table's answer."""
    answer = error_answer(exc)
    if not isinstance(exc, TryonError | HTTPException):
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return answer.response()


async def store_call(what: str, call: Callable[..., T], *args: Any) -> T:
    """`call` on the thread pool; our own refusals (a `TryonError`: no such job or batch,
    a retry refused) go to the error table as they are, anything else is the store
    failing: 503, its type logged, never its message (it may hold a URL or a photo)."""
    try:
        return await run_in_threadpool(call, *args)
    except TryonError:
        raise
    except Exception as exc:
        log.error("%s failed: %s", what, type(exc).__name__)
        raise StoreUnavailable from exc
