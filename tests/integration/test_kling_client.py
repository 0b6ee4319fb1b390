"""KlingClient against the emulator over real HTTP: round trips, error types, faults."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from PIL import Image

from harness import free_port
from kolors_tryon.emulator import EmulatorConfig, EmulatorServer
from kolors_tryon.kling import (
    AccountUnavailableError,
    ConcurrencyLimitError,
    ConfigurationError,
    InvalidRequestError,
    JwtAuth,
    KlingAuth,
    KlingClient,
    KlingConnectionError,
    KlingError,
    KlingTask,
    KlingTimeoutError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    StaticKeyAuth,
)

API_KEY = "sk-test-key"
ACCESS_KEY = "ak-test"
SECRET_KEY = "sk-secret-for-tests-0123456789abcdef"
# Short timeouts and near-instant retries keep failing tests fast.
TIMEOUT = (2.0, 5.0)


class RawAuth:
    """Sends a fixed Authorization header verbatim, to provoke the 1001/1002 answers."""

    def __init__(self, header: str) -> None:
        self.header = header

    def authorization(self) -> str:
        """The header as given."""
        return self.header

    def renew(self) -> bool:
        """Nothing to renew."""
        return False


def make_config(**overrides: Any) -> EmulatorConfig:
    """The test emulator's configuration, with some knobs changed."""
    knobs: dict[str, Any] = {
        "api_keys": (API_KEY,),
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "task_duration": 0.6,
        "concurrency_limit": 5,
        "error_rate": 0.0,
        "throttle_rate": 0.0,
        "retry_after": 1.0,
        "slow_rate": 0.0,
        "slow_seconds": 0.0,
        "drop_rate": 0.0,
        "account_error": None,
        "prefix": "",
    }
    knobs.update(overrides)
    return EmulatorConfig(**knobs)


@pytest.fixture
def prefixed_emulator() -> Iterator[EmulatorServer]:
    """An emulator mounted under /kling, naming image ordinals `id` like resellers."""
    server = EmulatorServer(make_config(prefix="/kling", image_key="id"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_client(server: EmulatorServer, auth: KlingAuth | None = None, **kw: Any) -> KlingClient:
    """A client for `server` with the test key and fast retries."""
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("backoff", 0.01)
    return KlingClient(server.base_url, auth or StaticKeyAuth(API_KEY), **kw)


def body(server: EmulatorServer, job_id: str | None = None, **extra: object) -> dict[str, object]:
    """A valid create body using the emulator's sample images."""
    return {
        "model_name": "kolors-virtual-try-on-v1",
        "human_image": f"{server.base_url}/_emulator/samples/human.png",
        "cloth_image": f"{server.base_url}/_emulator/samples/cloth.png",
        "external_task_id": job_id,
        "callback_url": None,
        **extra,
    }


def wait_terminal(client: KlingClient, task_id: str, limit: float = 10.0) -> KlingTask:
    """Poll until the task ends (the emulator's tasks last 0.6 s)."""
    deadline = time.monotonic() + limit
    while True:
        task = client.get(task_id)
        if task.is_terminal or time.monotonic() > deadline:
            return task
        time.sleep(0.1)


def blank_png_base64() -> str:
    """A valid, flat-colour 400x400 PNG: no person in it, so the task fails."""
    buffer = io.BytesIO()
    Image.new("RGB", (400, 400), (200, 200, 200)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def counter(stats: dict[str, Any], code: int) -> int:
    """How many answers the emulator gave with `code` (keys may be ints or strings)."""
    by_code = stats["answers_by_code"]
    return int(by_code.get(code, by_code.get(str(code), 0)))


# --- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("auth_kind", ["static", "jwt"])
def test_round_trip_to_succeed(emulator: EmulatorServer, auth_kind: str) -> None:
    """Create, get by both ids, follow to `succeed`, and find the task in the list."""
    auth: KlingAuth = (
        StaticKeyAuth(API_KEY) if auth_kind == "static" else JwtAuth(ACCESS_KEY, SECRET_KEY)
    )
    with make_client(emulator, auth) as client:
        created = client.create(body(emulator, f"job-{auth_kind}"))
        assert created.status in ("submitted", "processing")
        assert created.external_task_id == f"job-{auth_kind}"
        assert client.get(f"job-{auth_kind}").task_id == created.task_id

        done = wait_terminal(client, created.task_id)
        assert done.succeeded, done.status_message
        assert done.images
        assert all(image.url.startswith("http") for image in done.images)
        assert done.created_at is not None
        assert done.updated_at is not None

        listed = client.list(page_num=1, page_size=10)
        assert created.task_id in {task.task_id for task in listed}
    assert emulator.stats()["creates"] == 1


def test_round_trip_with_prefix(prefixed_emulator: EmulatorServer) -> None:
    """A base URL with a reseller prefix works, and `id` image ordinals parse."""
    assert prefixed_emulator.base_url.rstrip("/").endswith("/kling")
    with make_client(prefixed_emulator) as client:
        created = client.create(body(prefixed_emulator, "job-prefixed"))
        done = wait_terminal(client, created.task_id)
        assert done.succeeded, done.status_message
        assert [image.index for image in done.images] == list(range(len(done.images)))
        assert client.list()[0].task_id == created.task_id


def test_blank_human_image_ends_failed(emulator: EmulatorServer) -> None:
    """A Base64 image with no person is accepted, then the task ends `failed` with a reason."""
    with make_client(emulator) as client:
        created = client.create(body(emulator, "job-blank", human_image=blank_png_base64()))
        done = wait_terminal(client, created.task_id)
    assert done.failed
    assert done.images == ()
    assert done.status_message


def test_from_settings_builds_a_working_client(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Settings factory wires base URL, credentials and timeouts."""
    from kolors_tryon.config import Settings

    for name in ("API_KEY", "ACCESS_KEY", "SECRET_KEY", "BASE_URL"):
        monkeypatch.delenv(f"TRYON_KLING_{name}", raising=False)

    settings = Settings(
        kling_base_url=emulator.base_url,
        kling_access_key=ACCESS_KEY,
        kling_secret_key=SECRET_KEY,
        http_attempts=2,
        _env_file=None,
    )
    with KlingClient.from_settings(settings) as client:
        task = client.create(body(emulator, "job-settings"))
        assert client.get("job-settings").task_id == task.task_id


# --- error mapping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "code"),
    [("Bearer sk-wrong-key", 1000), ("", 1001), ("Basic dXNlcjpwYXNz", 1002)],
)
def test_bad_credentials_are_configuration_errors(
    emulator: EmulatorServer, header: str, code: int
) -> None:
    """Wrong, empty and malformed Authorization headers are permanent config errors."""
    with (
        make_client(emulator, RawAuth(header)) as client,
        pytest.raises(ConfigurationError) as info,
    ):
        client.create(body(emulator))
    assert (info.value.code, info.value.http_status) == (code, 401)
    assert not info.value.retryable
    assert emulator.stats()["creates"] == 0


def test_invalid_parameter_is_1201(emulator: EmulatorServer) -> None:
    """An invalid image parameter is an InvalidRequestError naming the field."""
    with make_client(emulator) as client, pytest.raises(InvalidRequestError) as info:
        client.create(body(emulator, human_image="ftp://example.invalid/h.png"))
    assert (info.value.code, info.value.http_status) == (1201, 400)
    assert "human_image" in info.value.message


def test_unknown_task_is_not_found(emulator: EmulatorServer) -> None:
    """Querying an id nobody created is NotFoundError (1203), after a single request."""
    with make_client(emulator) as client, pytest.raises(NotFoundError) as info:
        client.get("no-such-task")
    assert info.value.code == 1203
    assert emulator.stats()["queries"] == 1


@pytest.mark.parametrize(
    ("knobs", "cls", "code", "status"),
    [
        ({"concurrency_limit": 0}, ConcurrencyLimitError, 1303, 429),
        ({"throttle_rate": 1.0, "retry_after": 1.0}, RateLimitedError, 1302, 429),
        ({"error_rate": 1.0}, ServerError, 5000, 500),
        ({"account_error": 1102}, AccountUnavailableError, 1102, 429),
    ],
)
def test_fault_knobs_map_to_types(
    emulator: EmulatorServer,
    knobs: dict[str, Any],
    cls: type[KlingError],
    code: int,
    status: int,
) -> None:
    """Each refusal the emulator can give becomes its typed error; create is sent once."""
    emulator.configure(**knobs)
    with make_client(emulator) as client, pytest.raises(cls) as info:
        client.create(body(emulator))
    err = info.value
    assert (type(err), err.code, err.http_status) == (cls, code, status)
    assert err.retryable
    if code == 1302:
        assert err.retry_after == 1.0
    assert emulator.stats()["create_requests"] == 1


# --- retries and renewal --------------------------------------------------------------


def test_expired_jwt_is_reminted_once(emulator: EmulatorServer) -> None:
    """A token minted with a stale clock gets 1004; the client re-mints and succeeds."""
    stale = [time.time() - 3600]  # the first token expires half an hour before "now"

    def clock() -> float:
        return stale.pop() if stale else time.time()

    auth = JwtAuth(ACCESS_KEY, SECRET_KEY, clock=clock)
    with make_client(emulator, auth) as client:
        task = client.create(body(emulator, "job-renewed"))
    assert task.external_task_id == "job-renewed"
    stats = emulator.stats()
    assert (stats["create_requests"], stats["creates"]) == (2, 1)
    assert counter(stats, 1004) == 1


def test_create_not_retried_but_get_is(emulator: EmulatorServer) -> None:
    """On 5000 the paid create is sent once; a read is attempted read_attempts times."""
    with make_client(emulator, read_attempts=3) as client:
        task = client.create(body(emulator, "job-5000"))
        emulator.configure(error_rate=1.0)
        with pytest.raises(ServerError):
            client.create(body(emulator, "job-5000-b"))
        with pytest.raises(ServerError):
            client.get(task.task_id)
    stats = emulator.stats()
    assert stats["create_requests"] == 2
    # The emulator counts `queries` only past its fault gate, so count the 5000 answers:
    # one for the create, read_attempts for the get.
    assert counter(stats, 5000) == 1 + 3


def test_get_recovers_from_a_transient_throttle(emulator: EmulatorServer) -> None:
    """A read retried past a short Retry-After succeeds once throttling stops."""
    with make_client(emulator, read_attempts=3) as client:
        task = client.create(body(emulator, "job-throttle"))
        emulator.configure(throttle_rate=1.0, retry_after=0.2)
        started = time.monotonic()
        with pytest.raises(RateLimitedError):
            client.get(task.task_id)
        assert time.monotonic() - started >= 0.4  # two waits of Retry-After
        emulator.configure(throttle_rate=0.0)
        assert client.get(task.task_id).task_id == task.task_id


# --- network failures -----------------------------------------------------------------


def test_dropped_create_is_ambiguous_and_resolvable(emulator: EmulatorServer) -> None:
    """A connection dropped after the task was made: request_sent True, task findable."""
    emulator.configure(drop_rate=1.0)
    with make_client(emulator) as client:
        with pytest.raises(KlingConnectionError) as info:
            client.create(body(emulator, "job-dropped"))
        assert info.value.request_sent
        assert info.value.ambiguous
        emulator.configure(drop_rate=0.0)
        found = client.get("job-dropped")
    assert found.external_task_id == "job-dropped"
    stats = emulator.stats()
    assert (stats["creates"], stats["answers_by_code"].get("dropped")) == (1, 1)


def test_slow_answer_is_a_quick_timeout(emulator: EmulatorServer) -> None:
    """A read timeout below the server's delay raises KlingTimeoutError, request sent."""
    emulator.configure(slow_rate=1.0, slow_seconds=1.5)
    started = time.monotonic()
    with (
        make_client(emulator, timeout=(1.0, 0.3), read_attempts=1) as client,
        pytest.raises(KlingTimeoutError) as info,
    ):
        client.get("any-task")
    assert time.monotonic() - started < 1.2
    assert info.value.request_sent
    assert info.value.retryable


def test_a_create_given_longer_waits_for_an_answer_past_the_read_timeout(
    emulator: EmulatorServer,
) -> None:
    """With `answer_within`, a create answered after the read timeout is a task, and one
    not answered by then is an ambiguous timeout at that time, not at the read timeout."""
    emulator.configure(slow_rate=1.0, slow_seconds=1.0)
    with make_client(emulator, timeout=(1.0, 0.3), read_attempts=1) as client:
        task = client.create(body(emulator, "job-late"), answer_within=3.0)
        started = time.monotonic()
        with pytest.raises(KlingTimeoutError) as info:
            client.create(body(emulator, "job-later"), answer_within=0.6)
        elapsed = time.monotonic() - started
    assert task.external_task_id == "job-late"
    assert 0.6 <= elapsed < 0.95, elapsed  # neither the read timeout (0.3) nor the hold (1.0)
    assert info.value.request_sent
    assert emulator.stats()["create_requests"] == 2


@pytest.mark.parametrize("call", ["create", "get"])
def test_closed_port_is_connection_error_not_sent(call: str) -> None:
    """Nothing listening: KlingConnectionError with request_sent False (safe to resend)."""
    client = KlingClient(
        f"http://127.0.0.1:{free_port()}",
        StaticKeyAuth(API_KEY),
        timeout=(1.0, 1.0),
        read_attempts=2,
        backoff=0.01,
    )
    with client, pytest.raises(KlingConnectionError) as info:
        if call == "create":
            client.create({"human_image": "h", "cloth_image": "c"})
        else:
            client.get("t")
    assert info.value.request_sent is False
    assert not info.value.ambiguous


# --- the environment's proxy ----------------------------------------------------------


class _ForwardProxy:
    """A plain-HTTP forward proxy that keeps the request line of every call it relays."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def _relay(self) -> None:
                seen.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                forwarded = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                with requests.Session() as session:
                    session.trust_env = False
                    answer = session.request(
                        self.command,
                        self.path,  # absolute: that is what a proxy is sent
                        data=self.rfile.read(length) if length else None,
                        headers=forwarded,
                        timeout=10,
                    )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", ""))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _relay

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_calls_go_through_the_environments_proxy_unless_no_proxy_says_otherwise(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment is read once, when the client is made (not on every call), and
    still decides: HTTP_PROXY relays every call, NO_PROXY exempts the API's host."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxy = _ForwardProxy()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = make_client(emulator)
        task = client.create(body(emulator, "via-proxy"))
        assert client.get(task.task_id).task_id == task.task_id
        path = "/v1/images/kolors-virtual-try-on"
        assert proxy.seen == [
            f"POST {emulator.base_url}{path}",
            f"GET {emulator.base_url}{path}/{task.task_id}",
        ]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = make_client(emulator)
        direct.create(body(emulator, "direct"))
        assert len(proxy.seen) == 2  # straight to the API
    finally:
        proxy.close()
