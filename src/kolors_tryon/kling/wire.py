"""What the Kling client puts on the wire and reads back: the session, the envelope, the
failures of the network.

Apart from `client.py` so that the client holds the policy (what is sent, what may be
resent, what is logged) and this module the mechanics of one exchange: a session that
reads its proxies once, the unwrapping of `{code, message, request_id, data}` into data
or a typed `KlingError`, and the translation of a requests failure that says whether the
request may have reached the server.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator, Mapping
from typing import Final

import requests
import requests.auth
from urllib3.exceptions import MaxRetryError, NewConnectionError

from kolors_tryon.config import defaults
from kolors_tryon.config.http_deadline import DeadlineAdapter
from kolors_tryon.kling.errors import (
    ConfigurationError,
    KlingConnectionError,
    KlingTimeoutError,
    ServerError,
    error_from_response,
    error_without_envelope,
    parse_retry_after,
)
from kolors_tryon.kling.models import opt_int

__all__ = ["Bearer", "decode_envelope", "network_error", "new_session", "task_list"]

# Where resellers put the task objects of a list answer, tried in this order.
_LIST_KEYS: Final = ("list", "tasks", "items", "records", "data")


class Bearer(requests.auth.AuthBase):
    """Sets the Authorization header; its repr hides the value."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request

    def __repr__(self) -> str:
        return "Bearer(<redacted>)"


def new_session(base_url: str) -> requests.Session:
    session = requests.Session()
    # No urllib3-level retries: whether a request may be resent is decided above, per call.
    # Its connections are shut by a call's deadline (kolors_tryon.config.http_deadline).
    adapter = DeadlineAdapter(
        pool_connections=4, pool_maxsize=defaults.HTTP_POOL_SIZE, max_retries=0
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # What requests would read from the environment on every call (proxies, no_proxy,
    # a CA bundle), read once: every call goes to `base_url`, and scanning the whole
    # environment per request cost 0.4 ms of a 2.5 ms create (bench/README.md, s.1).
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False  # also: no ~/.netrc (the bearer token is passed as `auth`)
    return session


def decode_envelope(response: requests.Response) -> tuple[object, int, str | None]:
    """Unwrap the envelope: return (data, code, request_id) or raise a typed error."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    header_request_id = response.headers.get("X-Request-Id")
    if 300 <= status < 400:
        raise ConfigurationError(
            "the API answered with a redirect; set the base URL to its final location",
            http_status=status,
            request_id=header_request_id,
        )
    try:
        body: object = response.json()
    except ValueError:
        body = None
    if not isinstance(body, Mapping):
        # A proxy's HTML error page, an empty body, or JSON that is not an envelope.
        if status >= 400:
            raise error_without_envelope(status, header_request_id, retry_after)
        raise ServerError(
            f"malformed answer: expected a JSON object (HTTP {status})",
            http_status=status,
            request_id=header_request_id,
        )

    request_id = _opt_text(body.get("request_id")) or header_request_id
    message = _opt_text(body.get("message", body.get("msg"))) or ""
    raw_code = body.get("code")
    code = opt_int(raw_code)
    if raw_code is not None and code is None:
        raise ServerError(
            "malformed answer: non-numeric code", http_status=status, request_id=request_id
        )
    if code not in (0, None) or status >= 400:
        raise error_from_response(status, code or None, message, request_id, retry_after)
    if "data" in body:
        return body["data"], code or 0, request_id
    if code is None and "task_id" in body:
        return body, 0, request_id  # a reseller answering with the bare task object
    raise ServerError("malformed answer: no data", http_status=status, request_id=request_id)


def task_list(data: object) -> Iterator[object]:
    """The task objects of a list answer, wherever the reseller put them."""
    if data is None:
        return iter(())
    if isinstance(data, list):
        return iter(data)
    if isinstance(data, Mapping):
        for key in _LIST_KEYS:
            value = data.get(key)
            if isinstance(value, list):
                return iter(value)
    raise ServerError("malformed answer: list data is not a list of tasks")


def network_error(exc: requests.RequestException) -> KlingConnectionError:
    """Translate a requests failure, deciding whether the request may have been sent."""
    name = type(exc).__name__
    if isinstance(exc, requests.ConnectTimeout):
        return KlingTimeoutError(f"connect timeout ({name})", request_sent=False)
    if isinstance(exc, requests.Timeout):
        return KlingTimeoutError(f"read timeout ({name})", request_sent=True)
    sent = _maybe_sent(exc)
    return KlingConnectionError(f"{name}: {_reason(exc)}", request_sent=sent)


def _maybe_sent(exc: requests.RequestException) -> bool:
    """False only when the failure certainly happened before the request left us."""
    if not isinstance(exc, requests.ConnectionError):
        return True
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    # Refused, unreachable, DNS failure: no connection, so nothing was sent.
    if isinstance(reason, NewConnectionError):
        return False
    # A certificate that fails verification stops the handshake before any byte of ours.
    return not _chain_has(exc, ssl.SSLCertVerificationError)


def _chain_has(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, kind):
            return True
        stack.extend([item.__cause__, item.__context__, *item.args])
        if isinstance(item, MaxRetryError):
            stack.append(item.reason)
    return False


def _reason(exc: BaseException) -> str:
    """The innermost cause's type name (e.g. RemoteDisconnected): never its text, which
    may quote the URL."""
    reason: object = exc.args[0] if exc.args else exc
    if isinstance(reason, MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    if isinstance(reason, BaseException) and reason.args:
        inner = reason.args[-1]
        if isinstance(inner, BaseException):
            reason = inner
    return type(reason).__name__ if isinstance(reason, BaseException) else "connection failed"


def _opt_text(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
