"""JSON error bodies, the one shape every error of `tryon web` has.

`{"error": {"code": "...", "message": "..."}}`, plus `problems` (each `{field, rule,
message}`) and `job_id` for an invalid job. Every message passes through
`kolors_tryon.kling.redact`, so no token, key or Base64 run is ever echoed back.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kolors_tryon.jobs import JobRejected
from kolors_tryon.kling import redact

__all__ = [
    "error_body",
    "error_response",
    "handle_http_exception",
    "handle_unexpected",
    "rejection_body",
]

log = logging.getLogger(__name__)

# The `code` of an error answered by status alone (no route of ours chose another).
_CODES: Final = {
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
_MAX_MESSAGE: Final = 2000


def _clean(text: str) -> str:
    text = redact(text)
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """`{"error": {"code": code, "message": message, **extra}}`, the message redacted."""
    return {"error": {"code": code, "message": _clean(message), **extra}}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def rejection_body(rejection: JobRejected) -> dict[str, Any]:
    """The 422 body of an invalid job: every problem, each naming its field and rule."""
    problems = [
        {"field": _clean(p.field), "rule": p.rule, "message": _clean(p.message)}
        for p in rejection.problems
    ]
    return error_body(
        JobRejected.code, rejection.reason, job_id=rejection.job_id, problems=problems
    )


def handle_http_exception(request: Request, exc: Exception) -> Response:
    """404, 405 and the rest raised by routing: JSON, with the exception's headers (Allow)."""
    assert isinstance(exc, HTTPException)
    code = _CODES.get(exc.status_code, "error")
    try:
        phrase = http.HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "error"
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else phrase
    return error_response(exc.status_code, code, message, headers=exc.headers)


def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Any other exception: 500 with no detail (the log has the type, never the input)."""
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return error_response(500, "internal", "internal error; it has been logged")
