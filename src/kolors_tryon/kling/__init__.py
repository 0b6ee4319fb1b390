"""A standalone client for the Kling Kolors Virtual Try-On API.

It imports no Celery and, of this project, only `kolors_tryon.config`: its default
numbers, the one backoff, and `Settings` in the optional `from_settings` factories. So
it can be used from any script.

Helpers that only tests need (`parse_task`, `error_from_response`, `parse_retry_after`,
`TRYON_PATH`) are imported from their modules.

Example:
    >>> from kolors_tryon.kling import KlingClient, StaticKeyAuth
    >>> with KlingClient("https://api.example.com/kling", StaticKeyAuth("sk-...")) as c:
    ...     task = c.create({"human_image": url_h, "cloth_image": url_c})  # doctest: +SKIP
"""

from kolors_tryon.kling.auth import JwtAuth, KlingAuth, StaticKeyAuth, auth_from_settings
from kolors_tryon.kling.client import KlingClient
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
)
from kolors_tryon.kling.models import TERMINAL_STATUSES, KlingTask, TaskImage, TaskStatus
from kolors_tryon.kling.redact import redact

__all__ = [  # noqa: RUF022 - grouped by use, as dramatiq does
    # client
    "KlingClient",
    # auth
    "KlingAuth",
    "JwtAuth",
    "StaticKeyAuth",
    "auth_from_settings",
    # errors: the root, answering "may this create have billed?" (`.ambiguous`)
    "KlingError",
    # errors, retryable branch: the same request may succeed later
    "RetryableKlingError",
    "AccountUnavailableError",
    "ConcurrencyLimitError",
    "KlingConnectionError",
    "KlingTimeoutError",
    "RateLimitedError",
    "ServerError",
    # errors, permanent branch: sending it again will not help
    "PermanentKlingError",
    "ConfigurationError",
    "EndpointError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "PolicyViolationError",
    "TokenError",
    # models
    "KlingTask",
    "TaskImage",
    "TaskStatus",
    "TERMINAL_STATUSES",
    # helpers
    "redact",
]
