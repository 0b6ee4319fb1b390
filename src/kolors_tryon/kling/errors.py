"""Typed Kling errors: one root, two branches by what the caller should do next.

Kling answers HTTP 429 both for "slow down" (1302, 1303) and for "the account is out of
units" (1102), so the class is chosen from the business `code` first and the HTTP status
only when the code is unknown. Callers branch on `retryable` (or catch
`RetryableKlingError` / `PermanentKlingError`) and on `ambiguous` for the paid create call.
"""

from __future__ import annotations

import math
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import ClassVar

from kolors_tryon.errors import TryonError
from kolors_tryon.kling.redact import redact

__all__ = [
    "AccountUnavailableError",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "EndpointError",
    "InvalidRequestError",
    "KlingConnectionError",
    "KlingError",
    "KlingTimeoutError",
    "NotFoundError",
    "PermanentKlingError",
    "PermissionDeniedError",
    "PolicyViolationError",
    "RateLimitedError",
    "RetryableKlingError",
    "ServerError",
    "TokenError",
    "error_from_response",
    "parse_retry_after",
]

# Kling's messages are short; anything longer is a proxy's HTML page or an echo of input.
_MAX_MESSAGE = 300


class KlingError(TryonError):
    """Root of every error the Kling client raises.

    Attributes:
        http_status: The HTTP status of the answer, or None when there was no answer.
        code: Kling's business code (e.g. 1303), or None when the answer had none.
        message: A human-readable reason, already redacted and truncated.
        request_id: Kling's request id, for support tickets; None when absent.
        retry_after: Seconds to wait, from a Retry-After header; None when absent.
        retryable: Whether the same call can succeed later (class-level).
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str = "",
        *,
        http_status: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = _clean_message(message)
        self.http_status = http_status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(self.message)

    @property
    def ambiguous(self) -> bool:
        """True when a create call that raised this may nevertheless have been accepted."""
        return False

    def __str__(self) -> str:
        head = "Kling" if self.code is None else f"Kling {self.code}"
        if self.http_status is not None:
            head += f" (HTTP {self.http_status})"
        text = f"{head}: {self.message or type(self).__name__}"
        if self.request_id:
            text += f" [request_id={self.request_id}]"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, http_status={self.http_status!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor arguments do not survive the default pickling, and
        # errors cross process boundaries (Celery results, multiprocessing).
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[KlingError], state: dict[str, object]) -> KlingError:
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message", ""))
    err.__dict__.update(state)
    return err


class RetryableKlingError(KlingError):
    """The same call may succeed later: back off and try again."""

    retryable: ClassVar[bool] = True


class RateLimitedError(RetryableKlingError):
    """1302: requests too fast; back off (honour `retry_after`)."""


class ConcurrencyLimitError(RetryableKlingError):
    """1303: the account's try-on slots are all busy; back off at least 1 s."""


class ServerError(RetryableKlingError):
    """5000-5002, other 5xx, and answers too odd to trust (a proxy's HTML page).

    The server may have acted on the request before failing, so a create that raised
    this is ambiguous: resolve it by querying the external_task_id before resending.
    """

    @property
    def ambiguous(self) -> bool:
        """A failed create may still have been accepted upstream."""
        return True


class AccountUnavailableError(RetryableKlingError):
    """1100-1102: the account is blocked, in arrears or out of units.

    Retryable only in the sense that an operator can fix it: stop submitting, keep jobs
    queued, alert, and probe again after minutes, not seconds.
    """


class KlingConnectionError(RetryableKlingError):
    """No usable answer arrived: the network failed.

    Attributes:
        request_sent: False when the connection was never made (nothing reached the API,
            resending is safe); True when the request may have reached the server.
    """

    def __init__(
        self,
        message: str = "",
        *,
        request_sent: bool = True,
        http_status: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message,
            http_status=http_status,
            code=code,
            request_id=request_id,
            retry_after=retry_after,
        )
        self.request_sent = request_sent

    @property
    def ambiguous(self) -> bool:
        """A create whose request may have reached the server may have been accepted."""
        return self.request_sent

    def __str__(self) -> str:
        sent = "request may have been sent" if self.request_sent else "request not sent"
        return f"Kling network error: {self.message or type(self).__name__} ({sent})"


class KlingTimeoutError(KlingConnectionError):
    """The connect or read timeout expired."""


class PermanentKlingError(KlingError):
    """The same call will fail again: do not retry; fix the job or the configuration."""

    retryable: ClassVar[bool] = False


class ConfigurationError(PermanentKlingError):
    """Credentials or network policy are wrong (1000-1002, 1304): an operator must act."""


class EndpointError(ConfigurationError):
    """1202, or a 404/405 that is not even JSON: the URL is not the API's.

    A wrong base URL or reseller prefix makes every call fail this way; no job is at
    fault, so it is a configuration error for an operator, never a job's rejection.
    """


class TokenError(ConfigurationError):
    """1003/1004: the JWT is not yet valid or has expired.

    The client re-mints the token and retries once; this surfaces only when that did not
    help (a static key, or a clock far off), which is a configuration problem.
    """


class PermissionDeniedError(PermanentKlingError):
    """1103: the account may not use this API or model."""


class InvalidRequestError(PermanentKlingError):
    """1200-1202: the request itself is wrong; `message` names the parameter."""


class NotFoundError(InvalidRequestError):
    """1203: the task (or model) does not exist."""


class PolicyViolationError(PermanentKlingError):
    """1300/1301: platform or content-security policy refused the job for good."""


_BY_CODE: dict[int, type[KlingError]] = {
    1000: ConfigurationError,
    1001: ConfigurationError,
    1002: ConfigurationError,
    1003: TokenError,
    1004: TokenError,
    1100: AccountUnavailableError,
    1101: AccountUnavailableError,
    1102: AccountUnavailableError,
    1103: PermissionDeniedError,
    1200: InvalidRequestError,
    1201: InvalidRequestError,
    1202: EndpointError,
    1203: NotFoundError,
    1300: PolicyViolationError,
    1301: PolicyViolationError,
    1302: RateLimitedError,
    1303: ConcurrencyLimitError,
    1304: ConfigurationError,
    5000: ServerError,
    5001: ServerError,
    5002: ServerError,
}


def _class_for_status(http_status: int | None) -> type[KlingError]:
    """Classify an answer whose business code is unknown by its HTTP status alone."""
    if http_status is None:
        return ServerError
    if http_status >= 500:
        return ServerError
    if http_status == 429:
        return RateLimitedError
    if http_status == 401:
        return ConfigurationError
    if http_status == 403:
        return PermissionDeniedError
    if http_status == 404:
        return NotFoundError
    if 400 <= http_status < 500:
        return InvalidRequestError
    # A non-zero code on a 2xx/3xx answer is a shape we do not know: treat it as a
    # malformed answer, which is retryable and, for a create, ambiguous (the safe side).
    return ServerError


def error_without_envelope(
    http_status: int, request_id: str | None = None, retry_after: float | None = None
) -> KlingError:
    """Classify an error answer whose body is not Kling's JSON envelope at all.

    Such an answer comes from whatever sits in front of the API (a proxy, a load
    balancer, a wrong host): a 404 or 405 means the path is wrong, a 403 a gateway or
    firewall in the way. Neither says anything about a task or a job.
    """
    message = f"non-JSON answer (HTTP {http_status})"
    if http_status in (404, 405):
        return EndpointError(message, http_status=http_status, request_id=request_id)
    if http_status == 403:
        return ConfigurationError(message, http_status=http_status, request_id=request_id)
    return error_from_response(http_status, None, message, request_id, retry_after)


def error_from_response(
    http_status: int | None,
    code: int | None,
    message: str = "",
    request_id: str | None = None,
    retry_after: float | None = None,
) -> KlingError:
    """Build the typed error for a failed answer.

    Args:
        http_status: The HTTP status, or None if unknown.
        code: The business code from the envelope, or None if the answer had none.
        message: The envelope's message (redacted here before it is stored).
        request_id: The envelope's request id.
        retry_after: Seconds from a Retry-After header (see `parse_retry_after`).

    Returns:
        An instance of the class the business code maps to (KLING_API.md), or, for an
        unknown code, the class the HTTP status maps to.
    """
    cls = _BY_CODE.get(code) if code is not None else None
    if cls is None:
        cls = _class_for_status(http_status)
    return cls(
        message,
        http_status=http_status,
        code=code,
        request_id=request_id,
        retry_after=retry_after,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a Retry-After header into seconds from now.

    Args:
        value: The header value: delta-seconds ("3", liberally also "1.5") or an
            HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT").
        now: The current Unix time, for tests; defaults to `time.time()`.

    Returns:
        Non-negative seconds, or None when the header is absent or unparseable (a
        garbled header must not turn into an error of its own).
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one means the same.
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _clean_message(message: object) -> str:
    # Cut a proxy's megabyte of HTML before scanning it; the cut sits far enough past the
    # final length that a secret split by it is dropped by the final cut anyway.
    text = " ".join(str(message)[: _MAX_MESSAGE * 8].split())
    text = redact(text)
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3] + "..."
    return text
