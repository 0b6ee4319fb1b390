"""A standalone client for the Kling Kolors Virtual Try-On API.

It imports no Celery and nothing else of this project (except `Settings`, in the
optional `from_settings` factories), so it can be used from any script.

Example:
    >>> from kolors_tryon.kling import KlingClient, StaticKeyAuth
    >>> with KlingClient("https://api.example.com/kling", StaticKeyAuth("sk-...")) as c:
    ...     task = c.create({"human_image": url_h, "cloth_image": url_c})  # doctest: +SKIP
"""

from kolors_tryon.kling.auth import JwtAuth, KlingAuth, StaticKeyAuth, auth_from_settings
from kolors_tryon.kling.client import TRYON_PATH, KlingClient
from kolors_tryon.kling.errors import (
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
    error_from_response,
    error_without_envelope,
    parse_retry_after,
)
from kolors_tryon.kling.models import (
    TERMINAL_STATUSES,
    KlingTask,
    TaskImage,
    TaskStatus,
    parse_task,
)
from kolors_tryon.kling.redact import redact

__all__ = [
    "TERMINAL_STATUSES",
    "TRYON_PATH",
    "AccountUnavailableError",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "EndpointError",
    "InvalidRequestError",
    "JwtAuth",
    "KlingAuth",
    "KlingClient",
    "KlingConnectionError",
    "KlingError",
    "KlingTask",
    "KlingTimeoutError",
    "NotFoundError",
    "PermanentKlingError",
    "PermissionDeniedError",
    "PolicyViolationError",
    "RateLimitedError",
    "RetryableKlingError",
    "ServerError",
    "StaticKeyAuth",
    "TaskImage",
    "TaskStatus",
    "TokenError",
    "auth_from_settings",
    "error_from_response",
    "error_without_envelope",
    "parse_retry_after",
    "parse_task",
    "redact",
]
