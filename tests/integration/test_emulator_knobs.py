"""The emulator's lagging index, late creates and ``GET /account/costs``, over real HTTP."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
import requests

from harness import TEST_API_KEY
from kolors_tryon.emulator import EmulatorConfig, EmulatorServer

API = "/v1/images/kolors-virtual-try-on"
COSTS = "/account/costs"
FINAL = {"succeed", "failed"}
PACK_KEYS = {
    "resource_pack_name",
    "resource_pack_id",
    "resource_pack_type",
    "total_quantity",
    "remaining_quantity",
    "purchase_time",
    "effective_time",
    "invalid_time",
    "status",
}


# ----- helpers -----------------------------------------------------------------------


def session(key: str = TEST_API_KEY) -> requests.Session:
    """A keep-alive session carrying the bearer key."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    return http


def create(
    http: requests.Session,
    base: str,
    human: str = "human",
    timeout: float | tuple[float, float] = 10,
    **fields: Any,
) -> requests.Response:
    """POST a create whose images are the emulator's own samples (``human`` names one)."""
    body = {
        "human_image": f"{base}/_emulator/samples/{human}.png",
        "cloth_image": f"{base}/_emulator/samples/cloth.png",
        **fields,
    }
    return http.post(base + API, json=body, timeout=timeout)


def lookup(http: requests.Session, base: str, ref: str) -> requests.Response:
    """GET one task by ``task_id`` or ``external_task_id``."""
    return http.get(f"{base}{API}/{urllib.parse.quote(ref, safe='')}", timeout=10)


def costs(http: requests.Session, base: str) -> requests.Response:
    """GET the account's resource packs."""
    return http.get(base + COSTS, timeout=10)


def pack(answer: requests.Response) -> dict[str, Any]:
    """Return the one resource pack of a successful ``/account/costs`` answer."""
    assert answer.status_code == 200, answer.text
    [only] = answer.json()["data"]["resource_pack_subscribe_infos"]
    assert isinstance(only, dict)
    return only


def code_of(answer: requests.Response) -> int:
    """The business code of a JSON answer."""
    code = answer.json()["code"]
    assert isinstance(code, int)
    return code


def assert_error(answer: requests.Response, status: int, code: int) -> None:
    """Check an error envelope."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert (body["code"], body["data"]) == (code, None)
    assert body["request_id"]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def base(emulator: EmulatorServer) -> str:
    """The emulator's base URL."""
    return emulator.base_url


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A session with the static test key."""
    with session() as client:
        yield client


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """Start extra emulators with other configurations; stop them after the test."""
    servers: list[EmulatorServer] = []

    def start(**knobs: Any) -> EmulatorServer:
        knobs.setdefault("api_keys", (TEST_API_KEY,))
        server = EmulatorServer(EmulatorConfig(**knobs))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# ----- index_lag ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index_lag", "lookup_status", "second_status", "tasks_for_id"),
    [(0.0, 200, 400, 1), (1.5, 404, 200, 2)],
    ids=["no-lag", "lagging"],
)
def test_index_lag_hides_new_task_from_external_id_lookup_and_uniqueness(
    emulator: EmulatorServer,
    base: str,
    http: requests.Session,
    index_lag: float,
    lookup_status: int,
    second_status: int,
    tasks_for_id: int,
) -> None:
    """Within index_lag, lookup by external id is 404 and a repeat makes a second task."""
    emulator.configure(index_lag=index_lag, task_duration=30.0)
    first = create(http, base, external_task_id="lag-1").json()["data"]["task_id"]
    assert lookup(http, base, first).status_code == 200
    by_external = lookup(http, base, "lag-1")
    assert by_external.status_code == lookup_status
    if lookup_status == 404:
        assert_error(by_external, 404, 1203)
    listed = http.get(base + API, timeout=10).json()["data"]
    assert first in [task["task_id"] for task in listed]

    second = create(http, base, external_task_id="lag-1")
    assert second.status_code == second_status, second.text
    stats = emulator.stats()
    assert stats["tasks_by_external_id"] == {"lag-1": tasks_for_id}
    assert stats["creates"] == tasks_for_id
    assert stats["duplicates"] == 2 - tasks_for_id

    # Once indexed, the oldest task answers for the id and repeats are refused again.
    wait_for(lambda: lookup(http, base, "lag-1").status_code == 200)
    assert lookup(http, base, "lag-1").json()["data"]["task_id"] == first
    assert_error(create(http, base, external_task_id="lag-1"), 400, 1201)
    assert emulator.stats()["tasks_by_external_id"] == {"lag-1": tasks_for_id}


# ----- late creates ------------------------------------------------------------------


def test_late_create_times_out_the_client_then_makes_the_task(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """A late create times the client out; the task appears late_create_seconds later."""
    emulator.configure(late_create_rate=1.0, late_create_seconds=1.0, task_duration=30.0)
    started = time.time()
    with pytest.raises(requests.ReadTimeout):
        create(http, base, timeout=(5.0, 0.3), external_task_id="late-1")
    assert_error(lookup(http, base, "late-1"), 404, 1203)
    stats = emulator.stats()
    assert (stats["create_requests"], stats["late_creates"], stats["creates"]) == (1, 1, 0)
    assert stats["tasks"] == 0

    wait_for(lambda: lookup(http, base, "late-1").status_code == 200)
    task = lookup(http, base, "late-1").json()["data"]
    # Made after the hold, not when the request arrived (ms truncation allowed for).
    assert task["created_at"] >= int((started + 1.0) * 1000) - 1
    stats = emulator.stats()
    assert (stats["creates"], stats["tasks"]) == (1, 1)
    assert stats["tasks_by_external_id"] == {"late-1": 1}
    # The timed-out connection must not spoil the session's next request.
    assert http.get(base + API, timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("index_lag", "tasks_for_id", "duplicates"),
    [(0.0, 1, 1), (30.0, 2, 0)],
    ids=["indexed-late-create-refused", "lagging-index-double-task"],
)
def test_retry_after_a_late_create_timeout(
    emulator: EmulatorServer,
    base: str,
    http: requests.Session,
    index_lag: float,
    tasks_for_id: int,
    duplicates: int,
) -> None:
    """A retry beats the late create; the late one is then a duplicate unless the index lags."""
    emulator.configure(
        late_create_rate=1.0, late_create_seconds=1.0, index_lag=index_lag, task_duration=30.0
    )
    with pytest.raises(requests.ReadTimeout):
        create(http, base, timeout=(5.0, 0.3), external_task_id="retry-1")
    emulator.configure(late_create_rate=0.0)
    assert create(http, base, external_task_id="retry-1").status_code == 200
    wait_for(lambda: emulator.stats()["creates"] + emulator.stats()["duplicates"] == 2)
    stats = emulator.stats()
    assert stats["tasks_by_external_id"] == {"retry-1": tasks_for_id}
    assert stats["duplicates"] == duplicates
    assert stats["create_requests_by_external_id"] == {"retry-1": 2}


def test_reset_forgets_a_held_late_create(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """A reset during a late create's hold means its task is never made."""
    emulator.configure(late_create_rate=1.0, late_create_seconds=0.6)
    with pytest.raises(requests.ReadTimeout):
        create(http, base, timeout=(5.0, 0.2))
    emulator.reset()
    time.sleep(0.8)
    stats = emulator.stats()
    assert (stats["creates"], stats["tasks"]) == (0, 0)


# ----- GET /account/costs ------------------------------------------------------------


@pytest.mark.parametrize("credential", ["static-key", "jwt"])
def test_account_costs_has_the_official_shape(emulator: EmulatorServer, credential: str) -> None:
    """/account/costs answers the official envelope with one full try-on pack."""
    config = emulator.config
    token = TEST_API_KEY
    if credential == "jwt":
        assert config.access_key is not None and config.secret_key is not None
        now = int(time.time())
        claims = {"iss": config.access_key, "exp": now + 1800, "nbf": now - 5}
        token = jwt.encode(claims, config.secret_key, "HS256")
    with session(token) as client:
        answer = costs(client, emulator.base_url)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["code"], body["message"]) == (0, "SUCCEED")
    assert body["request_id"]
    data = body["data"]
    assert set(data) == {"code", "msg", "resource_pack_subscribe_infos"}
    assert (data["code"], data["msg"]) == (0, "")
    info = pack(answer)
    assert set(info) == PACK_KEYS
    assert info["resource_pack_name"] == "Kolors Virtual Try-On pack"
    assert info["resource_pack_type"] == "decreasing_total"
    assert info["status"] == "online"
    assert isinstance(info["resource_pack_id"], str) and info["resource_pack_id"]
    assert (info["total_quantity"], info["remaining_quantity"]) == (1000.0, 1000.0)
    times = [info[key] for key in ("purchase_time", "effective_time", "invalid_time")]
    assert all(isinstance(value, int) for value in times)
    assert times[0] <= times[1] < times[2]
    assert times[1] <= time.time() * 1000
    stats = emulator.stats()
    assert stats["account_costs_requests"] == 1
    assert stats["answers_by_code"] == {"0": 1}


@pytest.mark.parametrize(
    ("human", "units_total", "remaining_after"),
    [("human", 10.0, 9.0), ("blank", 10.0, 10.0), ("human", 0, 0.0)],
    ids=["succeeded-charges-one", "failed-charges-nothing", "never-below-zero"],
)
def test_remaining_quantity_drops_when_a_task_succeeds(
    emulator: EmulatorServer,
    base: str,
    http: requests.Session,
    human: str,
    units_total: float,
    remaining_after: float,
) -> None:
    """remaining_quantity is units_total minus one per succeeded task, none while running."""
    emulator.configure(units_total=units_total, account_costs_min_interval=0, task_duration=1.0)
    task_id = create(http, base, human=human).json()["data"]["task_id"]
    info = pack(costs(http, base))
    assert (info["total_quantity"], info["remaining_quantity"]) == (units_total, units_total)
    wait_for(lambda: lookup(http, base, task_id).json()["data"]["task_status"] in FINAL)
    assert pack(costs(http, base))["remaining_quantity"] == remaining_after


@pytest.mark.parametrize(
    ("min_interval", "retry_after", "second_code", "has_header"),
    [(1.0, 1.0, 1302, True), (1.0, None, 1302, False), (0.0, 1.0, 0, False)],
    ids=["limited", "limited-without-retry-after", "limit-off"],
)
def test_account_costs_rate_limit(
    emulator: EmulatorServer,
    base: str,
    http: requests.Session,
    min_interval: float,
    retry_after: float | None,
    second_code: int,
    has_header: bool,
) -> None:
    """A second call within account_costs_min_interval is 429 / 1302; waiting admits it."""
    emulator.configure(account_costs_min_interval=min_interval, retry_after=retry_after)
    assert costs(http, base).status_code == 200
    second = costs(http, base)
    assert code_of(second) == second_code
    assert ("Retry-After" in second.headers) == has_header
    if second_code:
        assert_error(second, 429, 1302)
        wait = float(second.headers.get("Retry-After", min_interval))
        assert 0 < wait <= min_interval
        time.sleep(wait)
    assert costs(http, base).status_code == 200
    stats = emulator.stats()
    assert stats["account_costs_requests"] == 3
    assert stats["answers_by_code"].get("1302", 0) == (1 if second_code else 0)


@pytest.mark.parametrize(
    ("method", "authorization"),
    [("GET", f"Bearer {TEST_API_KEY}"), ("POST", f"Bearer {TEST_API_KEY}"), ("GET", None)],
    ids=["get", "post", "no-auth"],
)
def test_disabled_account_costs_is_404_without_json(
    emulator: EmulatorServer, base: str, method: str, authorization: str | None
) -> None:
    """account_costs_enabled=false (set over the control endpoint) answers a non-JSON 404."""
    plain = requests.post(
        base + "/_emulator/config", json={"account_costs_enabled": False}, timeout=10
    )
    assert plain.json()["account_costs_enabled"] is False
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = requests.request(method, base + COSTS, headers=headers, timeout=10)
    assert answer.status_code == 404
    assert "json" not in answer.headers["Content-Type"]
    with pytest.raises(ValueError):
        json.loads(answer.text)
    stats = emulator.stats()
    assert stats["account_costs_requests"] == 1
    assert stats["answers_by_code"] == {}


@pytest.mark.parametrize(
    ("authorization", "code"),
    [(None, 1001), ("Token sk-test-key", 1002), ("Bearer sk-wrong", 1000)],
    ids=["missing", "wrong-scheme", "unknown-key"],
)
def test_account_costs_needs_auth(
    emulator: EmulatorServer,
    base: str,
    http: requests.Session,
    authorization: str | None,
    code: int,
) -> None:
    """/account/costs without valid credentials is 401, and uses up no rate-limit window."""
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_error(requests.get(base + COSTS, headers=headers, timeout=10), 401, code)
    assert costs(http, base).status_code == 200
    assert emulator.stats()["account_costs_requests"] == 2


def test_account_costs_wrong_method_is_1202(base: str, http: requests.Session) -> None:
    """POST /account/costs answers 404 / 1202 while the endpoint exists."""
    assert_error(http.post(base + COSTS, json={}, timeout=10), 404, 1202)


def test_account_costs_lives_under_the_prefix(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    """With prefix /kling, /account/costs is served under it and not at the root."""
    server = make_emulator(prefix="/kling")
    root = server.base_url[: -len("/kling")]
    with session() as client:
        assert pack(costs(client, server.base_url))["remaining_quantity"] == 1000.0
        assert_error(costs(client, root), 404, 1202)


# ----- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("index_lag", -1.0),
        ("index_lag", math.nan),
        ("index_lag", "1"),
        ("late_create_rate", 1.5),
        ("late_create_rate", -0.1),
        ("late_create_seconds", -1.0),
        ("late_create_seconds", math.inf),
        ("units_total", -5),
        ("units_total", True),
        ("account_costs_enabled", "false"),
        ("account_costs_enabled", 1),
        ("account_costs_min_interval", -0.5),
    ],
)
def test_new_knobs_refuse_bad_values(emulator: EmulatorServer, knob: str, value: Any) -> None:
    """configure() refuses out-of-range, non-finite and wrongly typed new knobs."""
    with pytest.raises(ValueError, match=knob):
        emulator.configure(**{knob: value})


def test_new_knobs_are_set_over_the_control_endpoint(emulator: EmulatorServer) -> None:
    """POST /_emulator/config sets every new knob at run time; integers become floats."""
    knobs = {
        "index_lag": 2,
        "late_create_rate": 0.25,
        "late_create_seconds": 40,
        "units_total": 500,
        "account_costs_enabled": False,
        "account_costs_min_interval": 0,
    }
    answer = requests.post(emulator.base_url + "/_emulator/config", json=knobs, timeout=10)
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    for name, value in knobs.items():
        assert shown[name] == value
        assert getattr(emulator.config, name) == value
    assert isinstance(emulator.config.units_total, float)
    refused = requests.post(
        emulator.base_url + "/_emulator/config", json={"index_lag": -1}, timeout=10
    )
    assert refused.status_code == 400
    assert "index_lag" in refused.json()["error"]
