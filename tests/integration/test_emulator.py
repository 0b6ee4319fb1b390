"""The Kling emulator over real HTTP: API behaviour, auth, validation, faults, control."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests
from PIL import Image

from kolors_tryon.emulator import EmulatorConfig, EmulatorServer

API = "/v1/images/kolors-virtual-try-on"
KEY = "sk-test-key"
TASK_KEYS = {
    "task_id",
    "task_status",
    "task_status_msg",
    "task_info",
    "task_result",
    "final_unit_deduction",
    "created_at",
    "updated_at",
}


# ----- helpers -----------------------------------------------------------------------


def encode_image(size: tuple[int, int] = (400, 600), fmt: str = "PNG", flat: bool = False) -> bytes:
    """Return an image file of ``size``: a gradient, or one flat colour."""
    img = Image.new("RGB", size, (120, 130, 140))
    if not flat:
        for x in range(0, size[0], 10):
            img.paste((x % 256, 50, 200), (x, 0, x + 5, size[1]))
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    """Bare Base64 text, as the API wants it."""
    return base64.b64encode(data).decode()


HUMAN = b64(encode_image((400, 600)))
CLOTH = b64(encode_image((400, 400), fmt="JPEG"))


def make_jwt(server: EmulatorServer, **claims: Any) -> str:
    """An HS256 token for the server's AK/SK; ``claims`` override the defaults.

    Times in ``claims`` are offsets from now; ``secret`` replaces the signing key and a
    None value drops the claim.
    """
    now = int(time.time())
    payload: dict[str, Any] = {"iss": server.config.access_key, "exp": 1800, "nbf": -5}
    payload.update(claims)
    secret = payload.pop("secret", None) or server.config.secret_key
    assert isinstance(secret, str)  # typed once cryptography is installed (moto needs it)
    for claim in ("exp", "nbf"):
        if isinstance(payload[claim], int):
            payload[claim] += now
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, "HS256")


def session(key: str = KEY) -> requests.Session:
    """A keep-alive session carrying the bearer key."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"
    return http


def create(http: requests.Session, base: str, **fields: Any) -> requests.Response:
    """POST a create with valid images unless ``fields`` override them."""
    body = {"human_image": HUMAN, "cloth_image": CLOTH, **fields}
    return http.post(base + API, json=body, timeout=10)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def query(http: requests.Session, base: str, ref: str) -> dict[str, Any]:
    """GET one task and return its ``data``."""
    answer = http.get(f"{base}{API}/{ref}", timeout=10)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def assert_error(answer: requests.Response, status: int, code: int) -> dict[str, Any]:
    """Check an error envelope and return it."""
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"] == code
    assert body["data"] is None
    assert body["request_id"]
    return body


@pytest.fixture
def base(emulator: EmulatorServer) -> str:
    """The shared emulator's base URL."""
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
        knobs.setdefault("api_keys", (KEY,))
        server = EmulatorServer(EmulatorConfig(**knobs))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A tiny local HTTP server collecting callback bodies: (url, bodies)."""
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook?secret=s3", received
    finally:
        server.shutdown()
        server.server_close()


# ----- happy path --------------------------------------------------------------------


def test_create_query_list_and_result_download(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """A task goes submitted -> processing -> succeed and its result is a real PNG."""
    answer = create(http, base, external_task_id="job-1")
    assert answer.status_code == 200
    envelope = answer.json()
    assert (envelope["code"], envelope["message"]) == (0, "SUCCEED")
    data = envelope["data"]
    assert set(data) == {"task_id", "task_status", "task_info", "created_at", "updated_at"}
    assert data["task_id"].isdigit()
    assert data["task_status"] == "submitted"
    assert data["task_info"] == {"external_task_id": "job-1"}
    task_id = data["task_id"]

    first = query(http, base, task_id)
    assert set(first) == TASK_KEYS
    assert first["task_status"] == "submitted"
    assert first["task_result"] is None
    wait_for(lambda: query(http, base, task_id)["task_status"] == "processing")
    wait_for(lambda: query(http, base, task_id)["task_status"] == "succeed")
    done = query(http, base, task_id)
    assert done["final_unit_deduction"] == "1"
    assert done["task_status_msg"] == ""
    assert done["updated_at"] >= done["created_at"] + 500
    [image] = done["task_result"]["images"]
    assert image["index"] == 0
    png = requests.get(image["url"], timeout=10)
    assert png.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (512, 768)

    listed = http.get(base + API, timeout=10).json()["data"]
    assert [task["task_id"] for task in listed] == [task_id]
    stats = emulator.stats()
    assert (stats["creates"], stats["tasks"], stats["in_flight"]) == (1, 1, 0)
    assert stats["answers_by_code"]["0"] >= 4


def test_query_by_external_task_id(base: str, http: requests.Session) -> None:
    """A task can be queried by the caller's external_task_id."""
    task_id = create(http, base, external_task_id="order/7 look").json()["data"]["task_id"]
    found = query(http, base, urllib.parse.quote("order/7 look", safe=""))
    assert found["task_id"] == task_id


def test_duplicate_external_task_id_is_refused_and_counted(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """A second create with an existing external_task_id is 1201 and makes no task."""
    assert create(http, base, external_task_id="dup").status_code == 200
    body = assert_error(create(http, base, external_task_id="dup"), 400, 1201)
    assert body["message"] == "external_task_id already exists"
    stats = emulator.stats()
    assert stats["duplicates"] == 1
    assert stats["creates"] == 1
    assert stats["create_requests"] == 2
    assert stats["create_requests_by_external_id"] == {"dup": 2}
    assert stats["tasks_by_external_id"] == {"dup": 1}
    assert stats["answers_by_code"] == {"0": 1, "1201": 1}


def test_unknown_task_is_1203(base: str, http: requests.Session) -> None:
    """Querying a task that does not exist answers 404 / 1203."""
    assert_error(http.get(f"{base}{API}/404404", timeout=10), 404, 1203)


def test_image_urls_jpeg_and_v1_5_are_accepted(base: str, http: requests.Session) -> None:
    """http(s) image URLs are fetched, JPEG is fine and model v1-5 is accepted."""
    answer = create(
        http,
        base,
        human_image=f"{base}/_emulator/samples/human.png",
        cloth_image=b64(encode_image((300, 300), fmt="JPEG")),
        model_name="kolors-virtual-try-on-v1-5",
    )
    assert answer.status_code == 200, answer.text


def test_keep_alive_has_no_nagle_stall(base: str, http: requests.Session) -> None:
    """Fifty keep-alive requests take far less than Nagle's 40 ms each would."""
    started = time.perf_counter()
    for _ in range(50):
        assert http.get(base + API, timeout=10).status_code == 200
    assert time.perf_counter() - started < 1.0


# ----- auth --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, 1001),
        ("", 1001),
        ("Token sk-test-key", 1002),
        ("Bearer", 1002),
        ("sk-test-key", 1002),
        ("Bearer sk-wrong", 1000),
        ("Bearer not.a.jwt", 1000),
    ],
    ids=["missing", "empty", "wrong-scheme", "no-token", "no-scheme", "unknown-key", "junk"],
)
def test_auth_header_errors(base: str, header: str | None, code: int) -> None:
    """Each malformed or unknown credential answers 401 with its business code."""
    headers = {} if header is None else {"Authorization": header}
    assert_error(requests.get(base + API, headers=headers, timeout=10), 401, code)


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"secret": "another-secret-that-is-long-enough-for-hs256"}, 1000),
        ({"iss": "ak-other"}, 1000),
        ({"exp": -10}, 1004),
        ({"exp": -10, "secret": "another-secret-that-is-long-enough-for-hs256"}, 1000),
        ({"nbf": 60}, 1003),
        ({"exp": "soon"}, 1000),
    ],
    ids=[
        "bad-signature",
        "wrong-iss",
        "expired",
        "forged-and-expired",
        "not-yet-valid",
        "exp-not-number",
    ],
)
def test_jwt_errors(emulator: EmulatorServer, base: str, claims: dict[str, Any], code: int) -> None:
    """Each JWT failure answers 401 with its business code (signature checked first)."""
    headers = {"Authorization": f"Bearer {make_jwt(emulator, **claims)}"}
    assert_error(requests.get(base + API, headers=headers, timeout=10), 401, code)


@pytest.mark.parametrize(
    "claims",
    [{}, {"nbf": 3}, {"exp": None, "nbf": None}],
    ids=["standard", "nbf-within-leeway", "no-times"],
)
def test_jwt_is_accepted(emulator: EmulatorServer, base: str, claims: dict[str, Any]) -> None:
    """An HS256 JWT with iss=AK signed with SK is accepted like a static key."""
    with session(make_jwt(emulator, **claims)) as client:
        assert create(client, base).status_code == 200


# ----- validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"human_image": "data:image/png;base64," + HUMAN}, "human_image: a data: URI"),
        ({"human_image": "not base64 at all!"}, "human_image: must be an http(s) URL or"),
        ({"cloth_image": HUMAN[:-2]}, "cloth_image: must be an http(s) URL or"),
        ({"human_image": b64(encode_image(fmt="GIF"))}, "human_image: image format must be"),
        (
            {"cloth_image": b64(encode_image((299, 300)))},
            "cloth_image: image width and height must be at least 300px",
        ),
        (
            {"human_image": b64(encode_image((300, 299), fmt="JPEG"))},
            "human_image: image width and height must be at least 300px",
        ),
        (
            {"human_image": b64(b"\x89PNG\r\n\x1a\n" + bytes(10 * 1024 * 1024))},
            "human_image: image must be at most 10 MB",
        ),
        ({"human_image": None}, "human_image: required field is missing"),
        ({"cloth_image": None}, "cloth_image: required field is missing"),
        ({"cloth_image": 42}, "cloth_image: must be a string"),
        ({"model_name": "kolors-virtual-try-on-v2"}, "model_name: must be one of"),
        ({"callback_url": "ftp://example.com/hook"}, "callback_url: must be an http(s) URL"),
        ({"external_task_id": 7}, "external_task_id: must be a string"),
        (
            {"human_image": "http://127.0.0.1:9/human.png"},
            "human_image: image URL could not be fetched",
        ),
        ({"cloth_image": "ftp://example.com/c.png"}, "cloth_image: image URL scheme must be"),
    ],
    ids=[
        "data-prefix",
        "bad-base64",
        "bad-padding",
        "gif",
        "299x300",
        "300x299-jpeg",
        "over-10mb",
        "missing-human",
        "missing-cloth",
        "cloth-not-string",
        "bad-model",
        "bad-callback",
        "external-id-not-string",
        "unreachable-url",
        "ftp-url",
    ],
)
def test_invalid_create_is_1201_naming_field_and_rule(
    emulator: EmulatorServer,
    base: str,
    http: requests.Session,
    fields: dict[str, Any],
    fragment: str,
) -> None:
    """An invalid field is refused with 400 / 1201 naming it, and no task is made."""
    body = {"human_image": HUMAN, "cloth_image": CLOTH, **fields}
    body = {key: value for key, value in body.items() if value is not None}
    answer = assert_error(http.post(base + API, json=body, timeout=10), 400, 1201)
    assert answer["message"].startswith(fragment), answer["message"]
    stats = emulator.stats()
    assert (stats["creates"], stats["in_flight"], stats["create_requests"]) == (0, 0, 1)


@pytest.mark.parametrize("payload", [b"[1, 2]", b"not json", b"", b'"text"'])
def test_body_not_a_json_object_is_1200(base: str, http: requests.Session, payload: bytes) -> None:
    """A create body that is not a JSON object is 400 / 1200."""
    answer = http.post(base + API, data=payload, timeout=10)
    assert_error(answer, 400, 1200)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/images/nothing"),
        ("GET", "/v2/images/kolors-virtual-try-on"),
        ("PUT", API),
        ("DELETE", API + "/123"),
        ("POST", API + "/123"),
        ("GET", API + "/123/extra"),
    ],
)
def test_unknown_path_or_method_is_1202(
    base: str, http: requests.Session, method: str, path: str
) -> None:
    """Unknown paths and wrong methods answer 404 / 1202."""
    assert_error(http.request(method, base + path, timeout=10), 404, 1202)


# ----- list paging -------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"pageNum": 0},
        {"pageNum": 1001},
        {"pageNum": "x"},
        {"pageSize": 0},
        {"pageSize": 501},
        {"pageSize": "-3"},
    ],
)
def test_list_paging_out_of_range_is_1201(
    base: str, http: requests.Session, params: dict[str, Any]
) -> None:
    """pageNum outside 1..1000 or pageSize outside 1..500 is 400 / 1201."""
    body = assert_error(http.get(base + API, params=params, timeout=10), 400, 1201)
    assert body["message"].startswith(next(iter(params)))


def test_list_pages_newest_first(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """The list is newest first, paged by pageNum/pageSize, with the bounds accepted."""
    ids = [create(http, base).json()["data"]["task_id"] for _ in range(3)]

    def page(num: int, size: int) -> list[str]:
        answer = http.get(base + API, params={"pageNum": num, "pageSize": size}, timeout=10)
        assert answer.status_code == 200
        return [task["task_id"] for task in answer.json()["data"]]

    assert page(1, 2) == [ids[2], ids[1]]
    assert page(2, 2) == [ids[0]]
    assert page(3, 2) == []
    assert page(1000, 500) == []
    assert page(1, 500) == ids[::-1]
    assert emulator.stats()["lists"] == 5


# ----- concurrency and outcomes ------------------------------------------------------


def test_concurrency_limit_is_1303_and_slots_free_without_polling(
    make_emulator: Callable[..., EmulatorServer], http: requests.Session
) -> None:
    """Creates over the limit get 429 / 1303; slots free when tasks end, unpolled."""
    server = make_emulator(concurrency_limit=2, task_duration=0.4)
    base = server.base_url
    assert create(http, base).status_code == 200
    assert create(http, base).status_code == 200
    assert_error(create(http, base), 429, 1303)
    stats = server.stats()
    assert (stats["creates"], stats["in_flight"], stats["peak_in_flight"]) == (2, 2, 2)
    wait_for(lambda: server.stats()["in_flight"] == 0)
    assert create(http, base).status_code == 200
    assert server.stats()["peak_in_flight"] == 2


def test_blank_human_image_fails_with_reason(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """A flat-colour human image makes a task that ends failed, task_result null."""
    blank = b64(http.get(f"{base}/_emulator/samples/blank.png", timeout=10).content)
    task_id = create(http, base, human_image=blank).json()["data"]["task_id"]
    wait_for(lambda: query(http, base, task_id)["task_status"] == "failed")
    task = query(http, base, task_id)
    assert task["task_status_msg"] == "no human detected in the human image"
    assert task["task_result"] is None
    wait_for(lambda: emulator.stats()["in_flight"] == 0)


def test_fail_rate_fails_tasks(make_emulator: Callable[..., EmulatorServer]) -> None:
    """fail_rate=1 makes every task end failed with a reason."""
    server = make_emulator(fail_rate=1.0, task_duration=0.0)
    with session() as client:
        task_id = create(client, server.base_url).json()["data"]["task_id"]
        task = query(client, server.base_url, task_id)
    assert task["task_status"] == "failed"
    assert task["task_status_msg"]
    assert task["task_result"] is None


# ----- fault knobs -------------------------------------------------------------------


def test_error_rate_answers_5000(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """error_rate=1 answers every API request 500 / 5000."""
    emulator.configure(error_rate=1.0)
    assert_error(http.get(base + API, timeout=10), 500, 5000)
    assert_error(create(http, base), 500, 5000)
    assert emulator.stats()["creates"] == 0


@pytest.mark.parametrize(("retry_after", "header"), [(1.0, "1"), (0.25, "0.25"), (None, None)])
def test_throttle_rate_answers_1302_with_retry_after(
    emulator: EmulatorServer,
    base: str,
    http: requests.Session,
    retry_after: float | None,
    header: str | None,
) -> None:
    """throttle_rate=1 answers 429 / 1302 with the configured Retry-After (or none)."""
    emulator.configure(throttle_rate=1.0, retry_after=retry_after)
    answer = http.get(base + API, timeout=10)
    assert_error(answer, 429, 1302)
    assert answer.headers.get("Retry-After") == header


def test_drop_rate_makes_the_task_but_drops_the_answer(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """drop_rate=1: the client sees a connection error, yet the task exists."""
    emulator.configure(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        create(http, base, external_task_id="ambiguous")
    emulator.configure(drop_rate=0.0)
    assert query(http, base, "ambiguous")["task_info"]["external_task_id"] == "ambiguous"
    stats = emulator.stats()
    assert stats["creates"] == 1
    assert stats["answers_by_code"]["dropped"] == 1
    assert stats["tasks_by_external_id"] == {"ambiguous": 1}


def test_account_error_refuses_creates_but_not_queries(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """account_error=1102 answers creates 429 / 1102 while queries and lists work."""
    task_id = create(http, base).json()["data"]["task_id"]
    emulator.configure(account_error=1102)
    assert_error(create(http, base), 429, 1102)
    assert query(http, base, task_id)["task_id"] == task_id
    assert http.get(base + API, timeout=10).status_code == 200
    assert emulator.stats()["creates"] == 1


def test_slow_rate_delays_answers(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """slow_rate=1 holds each request slow_seconds before answering."""
    emulator.configure(slow_rate=1.0, slow_seconds=0.3)
    started = time.perf_counter()
    assert http.get(base + API, timeout=10).status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_seeded_faults_are_reproducible(make_emulator: Callable[..., EmulatorServer]) -> None:
    """With a seed, the same sequence of requests meets the same faults after a reset."""
    server = make_emulator(seed=7, throttle_rate=0.5)

    def codes() -> list[int]:
        with session() as client:
            return [client.get(server.base_url + API, timeout=10).status_code for _ in range(20)]

    first = codes()
    server.reset()
    assert codes() == first
    assert set(first) == {200, 429}


def test_image_key_knob_sends_id(emulator: EmulatorServer, base: str) -> None:
    """image_key='id' names the image ordinal 'id', as some resellers do."""
    emulator.configure(image_key="id", task_duration=0.0)
    with session() as client:
        task_id = create(client, base).json()["data"]["task_id"]
        [image] = query(client, base, task_id)["task_result"]["images"]
    assert image["id"] == 0
    assert "index" not in image


def test_configure_refuses_bind_fields_and_bad_values(emulator: EmulatorServer) -> None:
    """configure() refuses host/port/prefix, unknown knobs and out-of-range values."""
    for knobs in ({"port": 1}, {"nope": 1}, {"fail_rate": 2.0}, {"account_error": 1303}):
        with pytest.raises(ValueError):
            emulator.configure(**knobs)


# ----- callbacks ---------------------------------------------------------------------


def test_callbacks_post_each_status_change(
    emulator: EmulatorServer,
    base: str,
    http: requests.Session,
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    """The bare task object is POSTed on processing and on succeed, in that order."""
    url, received = receiver
    task_id = create(http, base, callback_url=url).json()["data"]["task_id"]
    wait_for(lambda: len(received) == 2)
    assert [body["task_status"] for body in received] == ["processing", "succeed"]
    assert all(set(body) == TASK_KEYS and body["task_id"] == task_id for body in received)
    assert received[1]["task_result"]["images"][0]["url"].endswith(f"/{task_id}/0.png")
    wait_for(lambda: emulator.stats()["callbacks_sent"] == 2)


def test_failed_callbacks_are_counted(emulator: EmulatorServer, base: str) -> None:
    """A callback URL nobody listens on is counted in callbacks_failed, not blocking."""
    emulator.configure(task_duration=0.1)
    with session() as client:
        started = time.perf_counter()
        create(client, base, callback_url="http://127.0.0.1:9/hook")
        assert time.perf_counter() - started < 1.0
    wait_for(lambda: emulator.stats()["callbacks_failed"] == 2)


# ----- prefix and control endpoints --------------------------------------------------


def test_prefix_mounting(make_emulator: Callable[..., EmulatorServer]) -> None:
    """With prefix /kling every endpoint, control ones included, lives under it."""
    server = make_emulator(prefix="kling/", task_duration=0.0)
    base = server.base_url
    assert base.endswith("/kling")
    root = base[: -len("/kling")]
    with session() as client:
        task_id = create(client, base).json()["data"]["task_id"]
        [image] = query(client, base, task_id)["task_result"]["images"]
        assert image["url"].startswith(base + "/_emulator/results/")
        assert client.get(image["url"], timeout=10).status_code == 200
        assert_error(client.get(root + API, timeout=10), 404, 1202)
        assert client.get(base + "/_emulator/stats", timeout=10).json()["creates"] == 1
        assert client.get(base + "/_emulator/samples/human.png", timeout=10).status_code == 200


def test_public_base_url_sets_result_urls(emulator: EmulatorServer, base: str) -> None:
    """public_base_url replaces the base of result image URLs."""
    emulator.configure(public_base_url="https://cdn.example.test/emu/", task_duration=0.0)
    with session() as client:
        task_id = create(client, base).json()["data"]["task_id"]
        [image] = query(client, base, task_id)["task_result"]["images"]
    assert image["url"] == f"https://cdn.example.test/emu/_emulator/results/{task_id}/0.png"


def test_control_endpoints_over_http(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """Stats, config and reset work over HTTP without auth."""
    plain = requests.Session()
    assert create(http, base).status_code == 200
    stats = plain.get(base + "/_emulator/stats", timeout=10).json()
    assert stats == emulator.stats()
    assert stats["creates"] == 1

    config = plain.post(base + "/_emulator/config", json={"throttle_rate": 1.0}, timeout=10)
    assert config.status_code == 200
    assert config.json()["throttle_rate"] == 1.0
    assert "sk-secret-for-tests" not in config.text
    assert emulator.config.throttle_rate == 1.0
    assert_error(http.get(base + API, timeout=10), 429, 1302)

    refused = plain.post(base + "/_emulator/config", json={"port": 1}, timeout=10)
    assert refused.status_code == 400
    assert "port" in refused.json()["error"]

    assert plain.post(base + "/_emulator/reset", timeout=10).json() == {"reset": True}
    stats = plain.get(base + "/_emulator/stats", timeout=10).json()
    assert (stats["tasks"], stats["creates"], stats["answers_by_code"]) == (0, 0, {})


@pytest.mark.parametrize(("name", "min_side"), [("human", 300), ("cloth", 300), ("blank", 300)])
def test_samples_are_valid_images(base: str, name: str, min_side: int) -> None:
    """Sample inputs are real PNGs of at least 300 px per side."""
    answer = requests.get(f"{base}/_emulator/samples/{name}.png", timeout=10)
    assert answer.status_code == 200
    width, height = Image.open(io.BytesIO(answer.content)).size
    assert min(width, height) >= min_side


def test_result_of_unknown_or_unfinished_task_is_404(base: str, http: requests.Session) -> None:
    """Result images exist only for succeeded tasks."""
    task_id = create(http, base).json()["data"]["task_id"]
    assert http.get(f"{base}/_emulator/results/{task_id}/0.png", timeout=10).status_code == 404
    assert http.get(f"{base}/_emulator/results/1/0.png", timeout=10).status_code == 404


def test_chunked_body_and_stats_by_status(
    emulator: EmulatorServer, base: str, http: requests.Session
) -> None:
    """A chunked create body is read in full; tasks_by_status counts each status."""
    body = json.dumps({"human_image": HUMAN, "cloth_image": CLOTH}).encode()
    chunks = (body[i : i + 4096] for i in range(0, len(body), 4096))
    answer = http.post(base + API, data=chunks, timeout=10)
    assert answer.status_code == 200, answer.text
    assert emulator.stats()["tasks_by_status"] == {"submitted": 1}
    wait_for(lambda: emulator.stats()["tasks_by_status"] == {"succeed": 1})
    assert http.get(base + API, timeout=10).status_code == 200  # connection still usable
