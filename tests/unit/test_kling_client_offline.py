"""KlingClient against scripted answers no emulator gives: proxies, resellers, odd bodies.

A stub transport adapter replays a script of answers or exceptions, so these tests cover
the envelope decoding, the network-error translation and the retry policy exactly, with
no sockets. The real HTTP path is covered by tests/integration/test_kling_client.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from http.client import RemoteDisconnected
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from kolors_tryon.kling import (
    AccountUnavailableError,
    ConcurrencyLimitError,
    ConfigurationError,
    EndpointError,
    InvalidRequestError,
    JwtAuth,
    KlingClient,
    KlingConnectionError,
    KlingTimeoutError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    StaticKeyAuth,
    TokenError,
)

BASE = "https://api.example.test/kling"
TASK = {"task_id": "t-1", "task_status": "submitted", "task_info": {"external_task_id": "j"}}

Answer = tuple[int, Mapping[str, str], bytes] | BaseException


def envelope(data: object, code: int = 0, message: str = "SUCCEED") -> bytes:
    """An official-style JSON envelope."""
    return json.dumps({"code": code, "message": message, "request_id": "rq", "data": data}).encode()


class ScriptedAdapter(HTTPAdapter):
    """Answers each request with the next scripted answer (or raises it)."""

    def __init__(self, answers: list[Answer]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        status, headers, body = answer
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response._content = body
        response.url = request.url or ""
        response.request = request
        return response


def make_client(
    answers: list[Answer], *, auth: Any = None, read_attempts: int = 3
) -> tuple[KlingClient, ScriptedAdapter]:
    """A client whose session goes through a ScriptedAdapter."""
    adapter = ScriptedAdapter(answers)
    session = requests.Session()
    session.mount("https://", adapter)
    client = KlingClient(
        BASE,
        auth or StaticKeyAuth("sk-offline-key"),
        session=session,
        read_attempts=read_attempts,
        backoff=0.001,
    )
    return client, adapter


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Record retry waits instead of sleeping through them."""
    waits: list[float] = []
    monkeypatch.setattr("kolors_tryon.kling.client.time.sleep", waits.append)
    yield waits


def test_create_sends_json_to_prefixed_path() -> None:
    """Create POSTs JSON without None values to base+path with the bearer header."""
    client, adapter = make_client([(200, {}, envelope(TASK))])
    task = client.create({"human_image": "h", "cloth_image": "c", "callback_url": None})
    assert task.task_id == "t-1"
    (sent,) = adapter.sent
    assert sent.method == "POST"
    assert sent.url == BASE + "/v1/images/kolors-virtual-try-on"
    assert sent.headers["Authorization"] == "Bearer sk-offline-key"
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.body or b"{}") == {"human_image": "h", "cloth_image": "c"}


def test_get_quotes_the_id_and_list_sends_paging() -> None:
    """Ids are URL-quoted as one path segment; list sends pageNum and pageSize."""
    client, adapter = make_client([(200, {}, envelope(TASK)), (200, {}, envelope([TASK]))])
    client.get("job/1 ?x")
    assert adapter.sent[0].url == BASE + "/v1/images/kolors-virtual-try-on/job%2F1%20%3Fx"
    assert [t.task_id for t in client.list(2, 10)] == ["t-1"]
    assert adapter.sent[1].url == BASE + "/v1/images/kolors-virtual-try-on?pageNum=2&pageSize=10"


@pytest.mark.parametrize(
    ("page_num", "page_size"), [(0, 30), (1001, 30), (1, 0), (1, 501), (True, 30)]
)
def test_list_bounds_checked_locally(page_num: int, page_size: int) -> None:
    """Out-of-range paging is refused before any request is made."""
    client, adapter = make_client([])
    with pytest.raises(ValueError, match="page"):
        client.list(page_num, page_size)
    assert adapter.sent == []


@pytest.mark.parametrize(
    ("answer", "cls", "status"),
    [
        ((502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>"), ServerError, 502),
        ((200, {}, b"<html>oops</html>"), ServerError, 200),
        ((200, {}, b""), ServerError, 200),
        ((200, {}, b"[1, 2]"), ServerError, 200),
        ((200, {}, b'{"code": "abc", "data": {}}'), ServerError, 200),
        ((200, {}, b'{"code": 0, "message": "ok"}'), ServerError, 200),
        ((429, {}, b"Too Many Requests"), RateLimitedError, 429),
        ((401, {}, b"Unauthorized"), ConfigurationError, 401),
        ((404, {}, b"<html>Not Found</html>"), EndpointError, 404),
        ((405, {}, b"Method Not Allowed"), EndpointError, 405),
        ((403, {}, b"<html>Forbidden</html>"), ConfigurationError, 403),
        ((302, {"Location": "https://elsewhere/"}, b""), ConfigurationError, 302),
        ((200, {}, envelope(None, 1303, "busy")), ConcurrencyLimitError, 200),
        ((429, {}, b'{"code": "1102", "message": "units used up"}'), AccountUnavailableError, 429),
        ((500, {}, b'{"code": 0, "data": null}'), ServerError, 500),
    ],
)
def test_odd_answers_become_typed_errors(answer: Answer, cls: type[Exception], status: int) -> None:
    """Proxy pages, empty bodies, string codes and redirects map to typed errors."""
    client, _ = make_client([answer])
    with pytest.raises(cls) as info:
        client.create({"human_image": "h", "cloth_image": "c"})
    assert type(info.value) is cls
    assert getattr(info.value, "http_status", None) == status


@pytest.mark.parametrize(
    "body",
    [
        {"code": 0, "data": [TASK]},
        {"code": 0, "data": {"list": [TASK]}},
        {"code": 0, "data": {"tasks": [TASK], "total": 1}},
        {"code": "0", "data": {"items": [TASK]}},
    ],
)
def test_list_accepts_reseller_wrappings(body: dict[str, Any]) -> None:
    """A list of tasks is found whether bare or nested under a reseller's key."""
    client, _ = make_client([(200, {}, json.dumps(body).encode())])
    assert [t.task_id for t in client.list()] == ["t-1"]


def test_bare_task_answer_without_envelope() -> None:
    """A reseller answering with the bare task object (no code) is accepted."""
    client, _ = make_client([(200, {}, json.dumps(TASK).encode())])
    assert client.get("t-1").task_id == "t-1"


def _conn_error(reason: BaseException) -> requests.ConnectionError:
    return requests.ConnectionError(MaxRetryError(None, "/x", reason))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "cls", "sent"),
    [
        (
            requests.ConnectTimeout(MaxRetryError(None, "/", ConnectTimeoutError())),  # type: ignore[arg-type]
            KlingTimeoutError,
            False,
        ),
        (
            requests.ReadTimeout(ReadTimeoutError(None, "/", "read timed out")),  # type: ignore[arg-type]
            KlingTimeoutError,
            True,
        ),
        (
            _conn_error(NewConnectionError(None, "refused")),  # type: ignore[arg-type]
            KlingConnectionError,
            False,
        ),
        (
            requests.ConnectionError(
                ProtocolError("Connection aborted.", RemoteDisconnected("closed"))
            ),
            KlingConnectionError,
            True,
        ),
        (
            requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError())),
            KlingConnectionError,
            True,
        ),
        (requests.exceptions.ChunkedEncodingError("broken"), KlingConnectionError, True),
        (requests.RequestException("unknown"), KlingConnectionError, True),
    ],
)
def test_network_errors_say_whether_sent(
    exc: BaseException, cls: type[KlingConnectionError], sent: bool
) -> None:
    """Connect failures are safe to resend; anything after sending is ambiguous."""
    client, adapter = make_client([exc])
    with pytest.raises(cls) as info:
        client.create({"human_image": "h", "cloth_image": "c"})
    assert type(info.value) is cls
    assert info.value.request_sent is sent
    assert info.value.ambiguous is sent
    assert len(adapter.sent) == 1


@pytest.mark.parametrize(
    "answer",
    [
        (500, {}, envelope(None, 5000, "internal")),
        (429, {}, envelope(None, 1303, "busy")),
        requests.ConnectionError(
            ProtocolError("Connection aborted.", RemoteDisconnected("closed"))
        ),
    ],
)
def test_create_is_never_retried(answer: Answer) -> None:
    """The paid call is sent once, whatever the retryable failure."""
    client, adapter = make_client([answer, (200, {}, envelope(TASK))])
    with pytest.raises((ServerError, ConcurrencyLimitError, KlingConnectionError)):
        client.create({"human_image": "h", "cloth_image": "c"})
    assert len(adapter.sent) == 1


def test_get_retried_then_succeeds(_no_sleep: list[float]) -> None:
    """A read is retried on 5000 and network errors and returns the eventual answer."""
    client, adapter = make_client(
        [
            (500, {}, envelope(None, 5000, "internal")),
            requests.ReadTimeout("slow"),
            (200, {}, envelope(TASK)),
        ]
    )
    assert client.get("t-1").task_id == "t-1"
    assert len(adapter.sent) == 3
    assert len(_no_sleep) == 2


def test_get_gives_up_after_read_attempts() -> None:
    """After read_attempts failures the last error is raised."""
    client, adapter = make_client([(503, {}, b"down")] * 5, read_attempts=2)
    with pytest.raises(ServerError):
        client.get("t-1")
    assert len(adapter.sent) == 2


def test_get_honours_short_retry_after(_no_sleep: list[float]) -> None:
    """A short Retry-After is waited out before the next read attempt."""
    client, _ = make_client(
        [(429, {"Retry-After": "2"}, envelope(None, 1302, "slow")), (200, {}, envelope(TASK))]
    )
    client.get("t-1")
    assert 2.0 <= _no_sleep[0] < 2.1


def test_get_does_not_wait_out_long_retry_after() -> None:
    """A long Retry-After is left to the caller: the error is raised at once with it."""
    client, adapter = make_client([(429, {"Retry-After": "60"}, envelope(None, 1302, "slow"))])
    with pytest.raises(RateLimitedError) as info:
        client.get("t-1")
    assert info.value.retry_after == 60.0
    assert len(adapter.sent) == 1


@pytest.mark.parametrize(
    ("answer", "cls"),
    [
        ((429, {}, envelope(None, 1102, "units used up")), AccountUnavailableError),
        ((404, {}, envelope(None, 1203, "task not found")), NotFoundError),
        ((400, {}, envelope(None, 1201, "bad id")), InvalidRequestError),
    ],
)
def test_get_not_retried_on_permanent_or_account_errors(
    answer: Answer, cls: type[Exception]
) -> None:
    """Permanent errors and a blocked account are raised after one attempt."""
    client, adapter = make_client([answer] * 3)
    with pytest.raises(cls):
        client.get("t-1")
    assert len(adapter.sent) == 1


def test_token_error_remints_once_for_create() -> None:
    """After 1004 the client re-mints the JWT and sends the create once more."""
    times = [1_700_000_000.0]  # the first token is minted at this time, later ones after

    def clock() -> float:
        return times.pop(0) if times else 1_700_000_100.0

    auth = JwtAuth("ak", "sk-offline-secret-key-of-32-bytes!", clock=clock)
    expired: Answer = (401, {}, envelope(None, 1004, "token expired"))
    client, adapter = make_client([expired, (200, {}, envelope(TASK))], auth=auth)
    assert client.create({"human_image": "h", "cloth_image": "c"}).task_id == "t-1"
    assert len(adapter.sent) == 2
    assert adapter.sent[0].headers["Authorization"] != adapter.sent[1].headers["Authorization"]


def test_token_error_stands_when_reminting_fails() -> None:
    """A second 1004 after re-minting (or a static key) raises TokenError."""
    auth = JwtAuth("ak", "sk-offline-secret-key-of-32-bytes!")
    expired: Answer = (401, {}, envelope(None, 1004, "token expired"))
    client, adapter = make_client([expired, expired, (200, {}, envelope(TASK))], auth=auth)
    with pytest.raises(TokenError):
        client.create({"human_image": "h", "cloth_image": "c"})
    assert len(adapter.sent) == 2
    static, adapter = make_client([expired, (200, {}, envelope(TASK))])
    with pytest.raises(TokenError):
        static.create({"human_image": "h", "cloth_image": "c"})
    assert len(adapter.sent) == 1


def test_logs_hold_no_secrets(caplog: pytest.LogCaptureFixture) -> None:
    """DEBUG logs name method, path, status, code and request id, never token or body."""
    image = "iVBORw0KGgo" * 50
    client, _ = make_client(
        [
            (200, {}, envelope(TASK)),
            (400, {}, envelope(None, 1201, "bad image " + image)),
        ]
    )
    with caplog.at_level(logging.DEBUG, logger="kolors_tryon.kling"):
        client.create({"human_image": image, "cloth_image": "https://x/c.png?sig=s3cr3t"})
        with pytest.raises(InvalidRequestError) as info:
            client.create({"human_image": image, "cloth_image": "c"})
    text = caplog.text + str(info.value)
    assert "POST /v1/images/kolors-virtual-try-on -> HTTP 200 code 0 request_id rq" in text
    assert "code 1201" in text
    for secret in ("sk-offline-key", "iVBORw0KGgoiVBORw0KGgo", "s3cr3t"):
        assert secret not in text


def test_repr_and_context_manager() -> None:
    """The client's repr hides the key; closing an injected session is left to its owner."""
    client, _ = make_client([(200, {}, envelope(TASK))])
    with client as entered:
        assert entered is client
        assert "sk-offline-key" not in repr(client)
    assert client.get("t-1").task_id == "t-1"  # the injected session is still usable


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "api.example.test"}, "base_url"),
        ({"read_attempts": 0}, "read_attempts"),
        ({"timeout": (0.0, 1.0)}, "timeout"),
    ],
)
def test_constructor_validates(kwargs: dict[str, Any], match: str) -> None:
    """Obvious configuration mistakes fail at construction, not on the first call."""
    args: dict[str, Any] = {"base_url": BASE, "auth": StaticKeyAuth("k"), **kwargs}
    with pytest.raises(ValueError, match=match):
        KlingClient(**args)
