"""The HTTP client for the Kolors Virtual Try-On endpoints.

Two rules shape it. The create call is paid, so it is never resent blindly: the only
retry is one after a 1003/1004 answer (an auth failure created nothing), and a network
failure says whether the request may have reached the server (`request_sent`), so the
caller can resolve an ambiguous create by querying its external_task_id. Read-only calls
are safe to repeat, so they get a few quick attempts here; longer waits belong to the
caller's queue-level retries.

Every request is one INFO log line (endpoint, HTTP status, business code, duration,
attempt, and the job and Kling task it concerns, from `kolors_tryon.observe.context`)
and one sample of the `tryon_kling_requests_total` and
`tryon_kling_request_duration_seconds` metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self, TypeVar
from urllib.parse import quote

import requests

from kolors_tryon.config import defaults
from kolors_tryon.config.backoff import backoff_delay
from kolors_tryon.config.http_deadline import call_deadline
from kolors_tryon.kling.account import AccountCosts, parse_account_costs
from kolors_tryon.kling.auth import KlingAuth, auth_from_settings
from kolors_tryon.kling.errors import (
    AccountUnavailableError,
    EndpointError,
    KlingError,
    KlingTimeoutError,
    NotFoundError,
    RetryableKlingError,
    ServerError,
    TokenError,
)
from kolors_tryon.kling.models import KlingTask, parse_task
from kolors_tryon.kling.redact import redact
from kolors_tryon.kling.wire import Bearer, decode_envelope, network_error, new_session, task_list
from kolors_tryon.observe import metrics
from kolors_tryon.observe.context import current_job, note_job

if TYPE_CHECKING:
    from kolors_tryon.config import Settings

__all__ = ["ACCOUNT_COSTS_PATH", "TRYON_PATH", "KlingClient"]

logger = logging.getLogger(__name__)

TRYON_PATH: Final = "/v1/images/kolors-virtual-try-on"
ACCOUNT_COSTS_PATH: Final = "/account/costs"
_USER_AGENT: Final = "kolors-tryon/0.1"
# Keys under which resellers have been seen to nest the list of tasks.
_T = TypeVar("_T")


class KlingClient:
    """A thread-safe client for one Kling account.

    Args:
        base_url: API root with any reseller prefix, e.g. "https://api.gpt.ge/kling".
        auth: Supplies the Authorization header (static key or JWT).
        timeout: (connect, read) seconds applied to every request; each request also
            ends by their sum however slowly the API answers (a whole-call deadline,
            `kolors_tryon.config.http_deadline`), so a submit run's attempt window holds.
            A `session` passed in should carry `DeadlineAdapter`; without it only the
            timeouts, cut to the time left, bound a trickling answer.
        read_attempts: Attempts of a read-only call (get, list) before its error is
            raised; 1 disables the quick retries.
        session: A session to use instead of a new one (it is then not closed here).
        backoff: First wait between read attempts in seconds; doubles, with equal
            jitter (`kolors_tryon.config.backoff`).
        max_retry_after: A Retry-After longer than this is not waited out here: the
            error is raised so the caller can reschedule instead of blocking a thread.
            It also caps the backoff between read attempts.
    """

    def __init__(
        self,
        base_url: str,
        auth: KlingAuth,
        *,
        timeout: tuple[float, float] = defaults.HTTP_TIMEOUT,
        read_attempts: int = defaults.HTTP_ATTEMPTS,
        session: requests.Session | None = None,
        backoff: float = defaults.READ_BACKOFF_BASE,
        max_retry_after: float = defaults.MAX_RETRY_AFTER_IN_TASK,
    ) -> None:
        base = base_url.strip().rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if read_attempts < 1:
            raise ValueError("read_attempts must be at least 1")
        if len(timeout) != 2 or min(timeout) <= 0:
            raise ValueError("timeout must be a (connect, read) pair of positive seconds")
        self._base = base
        self._url = base + TRYON_PATH
        self._auth = auth
        self._timeout = (float(timeout[0]), float(timeout[1]))
        self._deadline = sum(self._timeout)
        self._read_attempts = read_attempts
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._owns_session = session is None
        self._session = session if session is not None else new_session(base)

    @classmethod
    def from_settings(cls, settings: Settings) -> KlingClient:
        """Build the client the service settings describe (sandbox emulator included)."""
        return cls(
            settings.effective_kling_base_url,
            auth_from_settings(settings),
            timeout=settings.http_timeout,
            read_attempts=settings.http_attempts,
        )

    # --- public calls -----------------------------------------------------------------

    def create(
        self, body: Mapping[str, object], *, answer_within: float | None = None
    ) -> KlingTask:
        """Submit a try-on task (the paid call).

        Never retried here except once with a fresh token after 1003/1004, because a
        resend after the server may have accepted the first request bills twice.

        Args:
            body: The create body (model_name, human_image, cloth_image, callback_url,
                external_task_id); keys whose value is None are dropped.
            answer_within: Wait this many seconds for the answer (the whole call, the
                token resend included) instead of the (connect, read) timeouts: for a
                caller on a thread of its own whose attempt window lasts longer. A late
                answer is a task id, where giving up at the read timeout leaves the job
                ambiguous (a lookup, after the visibility grace, before anything goes).

        Returns:
            The new task, usually `submitted`.

        Raises:
            KlingError: A typed error; check `.ambiguous` before sending again.
        """
        payload = {key: value for key, value in body.items() if value is not None}
        until = None if answer_within is None else time.monotonic() + answer_within
        data = self._request("POST", TRYON_PATH, "create", json_body=payload, until=until)
        return parse_task(data)

    def get(self, task_id: str) -> KlingTask:
        """Fetch one task by Kling's task_id or by the caller's external_task_id.

        Raises:
            NotFoundError: No such task (1203): for an ambiguous create, nothing was made.
            KlingError: Any other typed error, after `read_attempts` attempts.
        """
        if not isinstance(task_id, str) or not task_id.strip():
            raise ValueError("task_id must be a non-empty string")
        path = TRYON_PATH + "/" + quote(task_id.strip(), safe="")
        data = self._with_read_retries(
            lambda attempt: self._request("GET", path, "query", attempt=attempt)
        )
        if isinstance(data, list) and len(data) == 1:  # a reseller wrapping one task
            data = data[0]
        return parse_task(data)

    def list(self, page_num: int = 1, page_size: int = 30) -> list[KlingTask]:
        """Fetch one page of tasks, newest first (the API gives no total count).

        Args:
            page_num: 1..1000.
            page_size: 1..500.

        Raises:
            ValueError: A bound is out of range (checked here, costing no request).
        """
        _check_range("page_num", page_num, 1, 1000)
        _check_range("page_size", page_size, 1, 500)
        params = {"pageNum": page_num, "pageSize": page_size}
        data = self._with_read_retries(
            lambda attempt: self._request("GET", TRYON_PATH, "list", params=params, attempt=attempt)
        )
        return [parse_task(item) for item in task_list(data)]

    def account_costs(self) -> AccountCosts | None:
        """The account's resource packs and their remaining units (a free call).

        The official API limits it to about one request a second; resellers may not
        have it at all. So a 404, a non-JSON answer or an answer of another shape means
        *unknown* (None), never an error.

        Returns:
            The packs, or None when this API does not say.

        Raises:
            KlingError: The credentials are refused, or the API fails (after the quick
                read retries): the same errors as any other call.
        """
        try:
            data = self._with_read_retries(
                lambda attempt: self._request(
                    "GET", ACCOUNT_COSTS_PATH, "account_costs", attempt=attempt
                )
            )
        except (EndpointError, NotFoundError):
            return None
        except ServerError as err:
            if err.http_status is not None and err.http_status >= 400:
                raise
            return None  # a 200 whose body is not an envelope: not this endpoint
        return parse_account_costs(data)

    def close(self) -> None:
        """Release pooled connections (only those of a session this client created)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KlingClient({redact(self._url)!r}, auth={self._auth!r})"

    # --- transport --------------------------------------------------------------------

    def _with_read_retries(self, call: Callable[[int], _T]) -> _T:
        """Run a read-only call (given its attempt number), repeating it quickly on errors
        that may pass."""
        for attempt in range(1, self._read_attempts + 1):
            try:
                return call(attempt)
            except RetryableKlingError as err:
                delay = self._retry_delay(err, attempt)
                if delay is None:
                    raise
                logger.info(
                    "Kling read failed (%s); attempt %d of %d, retrying in %.2fs",
                    type(err).__name__,
                    attempt,
                    self._read_attempts,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _retry_delay(self, err: RetryableKlingError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to raise now."""
        if attempt >= self._read_attempts:
            return None
        # A blocked account stays blocked for minutes or hours: quick retries only add noise.
        if isinstance(err, AccountUnavailableError):
            return None
        if err.retry_after is not None and err.retry_after > self._max_retry_after:
            return None
        return backoff_delay(
            attempt - 1,
            base=self._backoff,
            cap=self._max_retry_after,
            retry_after=err.retry_after,
        )

    def _request(
        self,
        method: str,
        path: str,
        endpoint: str,
        *,
        params: Mapping[str, int] | None = None,
        json_body: Mapping[str, object] | None = None,
        attempt: int = 1,
        until: float | None = None,
    ) -> object:
        """One logical call: one HTTP exchange, plus one more after re-minting a token.

        Args:
            path: From the base URL (reseller prefix excluded), e.g. TRYON_PATH + "/id".
            endpoint: The name metrics and logs give the call (create, query...).
            until: The call's end on the steady clock (`time.monotonic()`), instead of
                each exchange's (connect, read) timeouts.
        """
        call = _Call(method, path, endpoint, attempt)
        try:
            return self._exchange(call, params=params, json_body=json_body, until=until)
        except TokenError:
            # 1003/1004 are answered before anything is created, so one resend with a
            # fresh token is safe even for create. A static key cannot be renewed.
            if not self._auth.renew():
                raise
            logger.info("Kling token rejected; re-minted it and sending once more")
            call = _Call(method, path, endpoint, attempt + 1)
            return self._exchange(call, params=params, json_body=json_body, until=until)

    def _exchange(
        self,
        call: _Call,
        *,
        params: Mapping[str, int] | None,
        json_body: Mapping[str, object] | None,
        until: float | None = None,
    ) -> object:
        """Send one HTTP request and return the envelope's `data`, or raise a typed error."""
        headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
        method = call.method
        seconds, timeouts = self._deadline, self._timeout
        if until is not None:  # one deadline for the whole wait: no read timeout within it
            seconds = until - time.monotonic()
            if seconds <= 0:  # a resend after a token refusal, with no time left
                raise KlingTimeoutError("no time left to send the call", request_sent=False)
            timeouts = (self._timeout[0], seconds)
        try:
            # The body is read inside (stream=False), so the deadline covers all of it.
            with call_deadline(seconds) as deadline:
                response = self._session.request(
                    method,
                    self._base + call.path,
                    params=params,
                    json=json_body,
                    headers=headers,
                    # Passed as `auth` so that requests never swaps in credentials from ~/.netrc.
                    auth=Bearer(self._auth.authorization()),
                    timeout=deadline.timeouts(*timeouts),
                    # A redirect would turn POST into GET and drop the Authorization header.
                    allow_redirects=False,
                )
        except requests.RequestException as exc:
            err = network_error(exc)
            kind = "timeout" if isinstance(err, KlingTimeoutError) else "network"
            call.done(kind, None, None, None, f"{type(exc).__name__}, sent={err.request_sent}")
            # Not chained: the requests exception holds the prepared request, whose
            # headers and body (token, Base64 images) error reporters would capture.
            raise err from None
        with response:
            try:
                data, code, request_id = decode_envelope(response)
            except KlingError as err:
                answer = str(err.code) if err.code is not None else f"http_{response.status_code}"
                call.done(answer, response.status_code, err.request_id, None)
                raise
        task_id = data.get("task_id") if isinstance(data, Mapping) else None
        call.done(str(code), response.status_code, request_id, task_id)
        return data


class _Call:
    """One HTTP exchange being made: what its log line and metrics say when it ends."""

    def __init__(self, method: str, path: str, endpoint: str, attempt: int) -> None:
        self.method = method
        self.path = path
        self.endpoint = endpoint
        self.attempt = attempt
        self.started = time.monotonic()

    def done(
        self,
        code: str,
        http_status: int | None,
        request_id: str | None,
        task_id: object,
        failure: str | None = None,
    ) -> None:
        """Count the call and log its one line (INFO), with its job and Kling task."""
        seconds = time.monotonic() - self.started
        metrics.api_call(self.endpoint, code, seconds)
        job = current_job()
        kling_task_id = task_id if isinstance(task_id, str) and task_id else None
        if kling_task_id is None and self.endpoint == "query":
            queried = self.path.rsplit("/", 1)[-1]
            kling_task_id = queried if queried != job.get("job_id") else None
        kling_task_id = kling_task_id or job.get("kling_task_id")
        note_job(kling_task_id=kling_task_id, request_id=request_id)
        logger.info(
            "Kling %s %s -> %s code %s request_id %s in %.3fs (job %s, task %s, attempt %d)",
            self.method,
            self.path,
            f"HTTP {http_status}" if http_status is not None else failure,
            code,
            request_id or "-",
            seconds,
            job.get("job_id", "-"),
            kling_task_id or "-",
            self.attempt,
            extra={
                "event": "kling_request",
                "endpoint": self.endpoint,
                "http_status": http_status,
                "code": code,
                "duration_s": round(seconds, 4),
                "attempt": self.attempt,
                "kling_task_id": kling_task_id,
                "request_id": request_id,
            },
        )


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
