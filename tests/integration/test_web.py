"""`tryon web` as a real process (uvicorn) on RabbitMQ + PostgreSQL, talked to over HTTP.

Nothing of ours is mocked: the service is started as an operator starts it, jobs it
accepts are run by a real worker against the Kling emulator, callbacks it forwards are
read back from the broker with kombu.
"""

from __future__ import annotations

import json
import re
import select
import socket
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from starlette.routing import Route

from harness import sample_b64, wait_until
from kolors_tryon.pipeline.callback_tokens import GENERATED_SECRET_NAME
from kolors_tryon.store import NewJob
from kolors_tryon.web import create_web_app, make_callback_token
from web_service import (
    KEYS,
    MAX_BATCH,
    PREVIOUS_SECRET,
    SECRET,
    Web,
    callbacks_on_broker,
    check_documented,
    free_port,
    sample_job,
    served_openapi,
    web_process,
    web_stack,
)

CALLBACK_CAP = 1024 * 1024


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The service with its emulator, namespace and database, shared by this module."""
    with web_stack(tmp_path_factory.mktemp("web")) as web:
        yield web


@pytest.fixture(scope="module")
def openapi(web: Web) -> dict[str, Any]:
    """The OpenAPI document the service serves."""
    return served_openapi(web)


# ----------------------------------------------------------------- health -------------
def test_healthz_answers_without_a_key(web: Web, openapi: dict[str, Any]) -> None:
    """/healthz is live and public, and answers its documented shape."""
    response = web.http.get(f"{web.url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    check_documented(openapi, "GET", "/healthz", response)


def test_readyz_is_ready_when_broker_and_store_answer(web: Web, openapi: dict[str, Any]) -> None:
    """/readyz is 200 with both checks ok on a running RabbitMQ and PostgreSQL."""
    response = web.http.get(f"{web.url}/readyz", timeout=15)
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"broker": {"ok": True}, "store": {"ok": True}}
    check_documented(openapi, "GET", "/readyz", response)


@pytest.mark.parametrize(
    ("failed", "variable", "url"),
    [
        ("store", "TRYON_DATABASE_URL", "postgresql://postgres@127.0.0.1:{port}/nothing"),
        ("broker", "TRYON_BROKER_URL", "amqp://guest:guest@127.0.0.1:{port}//"),
    ],
)
def test_readyz_names_the_dependency_that_does_not_answer(
    web: Web, openapi: dict[str, Any], tmp_path: Path, failed: str, variable: str, url: str
) -> None:
    """/readyz is 503 naming the dependency on a closed port; /healthz stays 200."""
    env = {**web.deployment.env, variable: url.format(port=free_port())}
    with web_process(env, tmp_path / "web-closed.log") as base:
        response = requests.get(f"{base}/readyz", timeout=20)
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks[failed]["ok"] is False and checks[failed]["error"]
    other = "broker" if failed == "store" else "store"
    assert checks[other] == {"ok": True}
    assert "127.0.0.1" not in response.text  # no URL (nor its password) is echoed
    check_documented(openapi, "GET", "/readyz", response)


# ----------------------------------------------------------------- auth ---------------
PROTECTED = [("POST", "/v1/jobs"), ("GET", "/v1/jobs/some-job"), ("GET", "/v1/counters")]
WRONG_AUTHORIZATION = {
    "missing": None,
    "wrong-key": "Bearer not-a-key",
    "key-prefix": f"Bearer {KEYS[0][:-1]}",
    "key-longer": f"Bearer {KEYS[0]}x",
    "no-scheme": KEYS[0],
    "basic-scheme": f"Basic {KEYS[0]}",
    "empty-bearer": "Bearer ",
}


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("authorization", WRONG_AUTHORIZATION.values(), ids=WRONG_AUTHORIZATION)
def test_requests_without_a_valid_key_get_401(
    web: Web, openapi: dict[str, Any], method: str, path: str, authorization: str | None
) -> None:
    """No key, a wrong key or a wrong scheme: 401 JSON with WWW-Authenticate: Bearer."""
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = web.http.request(method, f"{web.url}{path}", headers=headers, data="{}", timeout=5)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "unauthorized"
    assert KEYS[0] not in response.text
    check_documented(openapi, method, path, response)


def test_fixed_messages_read_as_written_while_values_stay_redacted(web: Web) -> None:
    """The 401 and a 422 help text keep their words; a key and Base64 sent in are redacted."""
    unauthorized = web.http.get(f"{web.url}/v1/jobs/x", timeout=5).json()["error"]["message"]
    assert unauthorized.endswith("in the Authorization header (Bearer scheme)"), unauthorized
    photo = sample_b64("human.jpg")
    job = {
        "job_id": "fixed-words",
        "human_image": "data:image/png,not-base64",
        "cloth_image": f"data:image/png;base64,{photo}",
        "metadata": {"note": "Bearer sk-live-0123456789abcdef"},
        "unknown": f"data:image/jpeg;base64,{photo[:400]}",
    }
    response = web.post_jobs(job, timeout=30)
    assert response.status_code == 422, response.text
    messages = {p["field"]: p["message"] for p in response.json()["error"]["problems"]}
    assert "use data:image/png;base64,<data> or bare Base64" in messages["human_image"]
    assert "sk-live-0123456789abcdef" not in response.text
    assert photo[:100] not in response.text


@pytest.mark.parametrize("key", KEYS, ids=["current", "next"])
def test_every_configured_key_is_accepted(web: Web, key: str) -> None:
    """Both keys of TRYON_API_KEYS open the door, so keys rotate without downtime."""
    response = web.http.get(f"{web.url}/v1/jobs/unknown-job", headers=web.auth(key), timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_without_api_keys_the_intake_is_off(
    web: Web, openapi: dict[str, Any], tmp_path: Path
) -> None:
    """No TRYON_API_KEYS: /v1 routes answer 503 intake_off, health stays public."""
    env = {k: v for k, v in web.deployment.env.items() if k != "TRYON_API_KEYS"}
    with web_process(env, tmp_path / "web-nokeys.log") as base:
        for method, path in PROTECTED:
            response = requests.request(
                method, f"{base}{path}", headers={"Authorization": "Bearer x"}, timeout=5
            )
            assert response.status_code == 503, (method, path)
            error = response.json()["error"]
            assert error["code"] == "intake_off"
            assert "TRYON_API_KEYS" in error["message"]
            check_documented(openapi, method, path, response)
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200


# ----------------------------------------------------------------- intake -------------
def test_a_valid_job_is_accepted_and_runs_to_success(web: Web, openapi: dict[str, Any]) -> None:
    """POST a valid job: 202 with its id and Location; a worker runs it; GET shows success."""
    job_id = f"web-ok-{uuid.uuid4().hex[:8]}"
    response = web.post_jobs(sample_job(job_id), timeout=30)
    assert response.status_code == 202, response.text
    assert response.json() == {"job_id": job_id}
    assert response.headers["location"] == f"/v1/jobs/{job_id}"
    check_documented(openapi, "POST", "/v1/jobs", response)

    worker = web.deployment.start_worker(concurrency=1, name="web-worker")
    try:
        record: dict[str, Any] = {}

        def succeeded() -> bool:
            answer = web.http.get(
                f"{web.url}{response.headers['location']}", headers=web.auth(), timeout=5
            )
            if answer.status_code == 200:
                record.update(answer.json())
                check_documented(openapi, "GET", f"/v1/jobs/{job_id}", answer)
            return record.get("state") in ("succeeded", "failed", "rejected")

        wait_until(succeeded, 90, 0.5, f"job {job_id} to end")
    finally:
        worker.stop()
    assert record["state"] == "succeeded", record
    assert record["images"] and record["error"] is None


def test_a_lone_surrogate_is_refused_at_the_door_and_an_old_record_holding_one_reads(
    web: Web, openapi: dict[str, Any]
) -> None:
    """POST metadata holding "\\ud800" (valid JSON): 422 naming the field, nothing queued; a
    record stored with one before intake refused them answers 200, escaped, not 500."""
    job_id = f"web-lone-{uuid.uuid4().hex[:8]}"
    text = json.dumps(sample_job(job_id)).removesuffix("}") + ', "metadata": {"n": "\\ud800"}}'
    response = web.post_jobs(text, timeout=30)
    assert response.status_code == 422, response.text
    check_documented(openapi, "POST", "/v1/jobs", response)
    (problem,) = response.json()["error"]["problems"]
    assert (problem["field"], problem["rule"]) == ("metadata.n", "encoding")

    store = web.deployment.store()
    try:  # what an earlier version accepted and recorded
        store.intake.accept([NewJob(job_id, body={}, metadata={"n": "caf\udce9"})])
    finally:
        store.dispose()
    answer = web.http.get(f"{web.url}/v1/jobs/{job_id}", headers=web.auth(), timeout=5)
    assert answer.status_code == 200, answer.text
    check_documented(openapi, "GET", f"/v1/jobs/{job_id}", answer)
    assert '"caf\\udce9"' in answer.text
    assert answer.json()["job_id"] == job_id


def test_a_derived_job_id_is_the_one_the_worker_records(web: Web) -> None:
    """Without job_id the answer carries the derived id, and posting it twice is one id."""
    message = sample_job("unused")
    del message["job_id"]
    message["metadata"] = {"case": uuid.uuid4().hex}
    first = web.post_jobs(message, timeout=30)
    second = web.post_jobs(message, timeout=30)
    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"]
    assert first.json()["job_id"].startswith("job-")


def test_a_body_that_is_not_json_typed_gets_415(web: Web, openapi: dict[str, Any]) -> None:
    """A form-encoded body (curl -d's default) is refused with 415, as JSON."""
    response = web.http.post(
        f"{web.url}/v1/jobs",
        data="human_image=x",
        headers={**web.auth(), "Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert response.status_code == 415
    check_documented(openapi, "POST", "/v1/jobs", response)


BATCHES: dict[str, tuple[Any, int, list[int]]] = {
    # name: (body built from a job id prefix `{p}`, status, per-item statuses)
    "all-valid": (["{p}-a", "{p}-b"], 202, [202, 202]),
    "mixed": (["{p}-a", {"human_image": 5}, "{p}-c"], 207, [202, 422, 202]),
    "all-invalid": ([{"model": "x"}, 7], 422, [422, 422]),
    "nulls-in-an-array": ([[None, None]], 422, [422]),  # schemathesis found it answered 207
    "same-job-twice": (["{p}-a", "{p}-a"], 202, [202, 202]),
}


@pytest.mark.parametrize(("items", "status", "statuses"), BATCHES.values(), ids=BATCHES)
def test_a_batch_answers_one_result_per_item(
    web: Web, openapi: dict[str, Any], items: list[Any], status: int, statuses: list[int]
) -> None:
    """A JSON array: 202 when every item is queued, 422 when every item is invalid, 207
    otherwise, each with per-item results."""
    prefix = f"web-batch-{uuid.uuid4().hex[:6]}"
    body = [sample_job(i.format(p=prefix)) if isinstance(i, str) else i for i in items]
    response = web.post_jobs(body, timeout=60)
    assert response.status_code == status, response.text
    check_documented(openapi, "POST", "/v1/jobs", response)
    result = response.json()
    assert [r["status"] for r in result["results"]] == statuses
    assert [r["index"] for r in result["results"]] == list(range(len(items)))
    assert result["accepted"] == statuses.count(202)
    for item, entry in zip(body, result["results"], strict=True):
        if entry["status"] == 202:
            assert entry["job_id"] == item["job_id"]
        else:
            assert entry["error"]["code"] == "invalid_job" and entry["error"]["problems"]


BAD_BATCHES: dict[str, tuple[str, str]] = {
    "empty": ("[]", "min_items"),
    "too-many": (json.dumps([{"x": i} for i in range(MAX_BATCH + 1)]), "max_items"),
    "truncated": ('[{"human_image": "https://a.example/x.jpg"},', "json"),
    "missing-comma": ('[{"a": 1} {"b": 2}]', "json"),
    "trailing-data": ('[{"a": 1}] {"b": 2}', "json"),
}


@pytest.mark.parametrize(("body", "rule"), BAD_BATCHES.values(), ids=BAD_BATCHES)
def test_a_batch_that_cannot_be_split_is_refused_whole(
    web: Web, openapi: dict[str, Any], body: str, rule: str
) -> None:
    """An empty, too long or malformed array is one 422 naming the message and rule."""
    response = web.post_jobs(body, timeout=10)
    assert response.status_code == 422, response.text
    check_documented(openapi, "POST", "/v1/jobs", response)
    problems = response.json()["error"]["problems"]
    assert [(p["field"], p["rule"]) for p in problems] == [("message", rule)]


# ----------------------------------------------------------------- body limits --------
def _read_status(sock: socket.socket, timeout: float = 10) -> tuple[int, bytes]:
    """The status and body of the answer, read until the server closes the connection."""
    sock.settimeout(timeout)
    data = b""
    with suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, rest


def _callback_path(job_id: str, secret: str = SECRET) -> str:
    return f"/kling/callback/{job_id}/{make_callback_token(job_id, secret)}"


@pytest.mark.parametrize(
    ("path", "cap"),
    [("/v1/jobs", None), (_callback_path("job-big"), CALLBACK_CAP)],
    ids=["intake", "callback"],
)
def test_a_declared_length_over_the_cap_is_refused_unread(
    web: Web, path: str, cap: int | None
) -> None:
    """Content-Length over the cap: 413 JSON at once, though the body never comes."""
    limit = cap or web.deployment.settings.web_max_body_bytes
    with socket.create_connection(("127.0.0.1", int(web.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEYS[0]}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n".encode()
            + b'{"human_image": "'
        )
        status, rest = _read_status(sock)
    assert status == 413
    assert b'"body_too_large"' in rest


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_cap(web: Web) -> None:
    """A chunked stream past the cap is answered 413 before the client finishes sending."""
    limit = web.deployment.settings.web_max_body_bytes
    chunk_data = b"A" * (256 * 1024)
    chunk = f"{len(chunk_data):x}\r\n".encode() + chunk_data + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", int(web.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(
            f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEYS[0]}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        sock.settimeout(2)
        while sent < 2 * limit:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (TimeoutError, OSError):
                break  # the server stopped reading: its answer is waiting
            sent += len(chunk_data)
        status, rest = _read_status(sock)
    assert status == 413, f"status {status} after {sent} bytes"
    assert b'"body_too_large"' in rest
    assert limit < sent + len(chunk_data) * 64 and sent < 2 * limit  # never sent it all


# ----------------------------------------------------------------- callbacks ----------
def _task(job_id: str, status: str = "succeed") -> dict[str, Any]:
    return {
        "task_id": f"kt-{uuid.uuid4().hex[:10]}",
        "task_status": status,
        "task_status_msg": "",
        "task_info": {"external_task_id": job_id},
        "task_result": {"images": [{"index": 0, "url": "https://cdn.example.com/r.png"}]},
        "final_unit_deduction": "1",
        "created_at": 1_700_000_000_000,
        "updated_at": 1_700_000_005_000,
    }


@pytest.mark.parametrize("secret", [SECRET, PREVIOUS_SECRET], ids=["current", "previous"])
def test_a_valid_callback_is_forwarded_as_a_celery_task(
    web: Web, openapi: dict[str, Any], secret: str
) -> None:
    """A token of the current or previous secret: 200, and `tryon.callback(job_id, task)`."""
    callbacks_on_broker(web, 0)  # start from an empty queue
    job_id = f"web-cb-{uuid.uuid4().hex[:8]}"
    task = _task(job_id)
    path = _callback_path(job_id, secret)
    response = web.http.post(f"{web.url}{path}", json=task, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True}
    check_documented(openapi, "POST", path, response)
    assert callbacks_on_broker(web, 1) == [[job_id, task]]
    assert make_callback_token(job_id, secret) not in web.log_path.read_text()


def test_a_reseller_envelope_is_unwrapped(web: Web) -> None:
    """A callback wrapped as {code, data: task} is forwarded as the bare task."""
    callbacks_on_broker(web, 0)
    job_id = f"web-cb-{uuid.uuid4().hex[:8]}"
    task = _task(job_id, "processing")
    response = web.http.post(
        f"{web.url}{_callback_path(job_id)}", json={"code": 0, "data": task}, timeout=30
    )
    assert response.status_code == 200
    assert callbacks_on_broker(web, 1) == [[job_id, task]]


def _refused_callbacks() -> dict[str, tuple[str, str, bytes, int]]:
    job = "web-cb-refused"
    other = "web-cb-other"
    good = json.dumps(_task(job)).encode()
    token = make_callback_token(job, SECRET)
    return {
        "wrong-token": (job, "A" * 43, good, 404),
        "token-of-another-job": (job, make_callback_token(other, SECRET), good, 404),
        "token-of-an-unknown-secret": (job, make_callback_token(job, "guess"), good, 404),
        "token-with-padding": (job, token + "=", good, 404),
        "not-json": (job, token, b"task_id=1&task_status=succeed", 400),
        "json-array": (job, token, b"[1, 2]", 400),
        "no-task-id": (job, token, b'{"task_status": "succeed"}', 400),
        "unknown-status": (job, token, b'{"task_id": "k1", "task_status": "done"}', 400),
        "empty-body": (job, token, b"", 400),
        "another-jobs-task": (job, token, json.dumps(_task(other)).encode(), 400),
        "invalid-utf8": (job, token, b'{"task_id": "\xff"}', 400),
    }


REFUSED = _refused_callbacks()


@pytest.mark.parametrize(("job_id", "token", "body", "status"), REFUSED.values(), ids=REFUSED)
def test_a_refused_callback_forwards_nothing(
    web: Web, openapi: dict[str, Any], job_id: str, token: str, body: bytes, status: int
) -> None:
    """A wrong token is 404, a garbage body 400; both counted, and no message is sent."""
    callbacks_on_broker(web, 0)
    counters = web.http.get(f"{web.url}/v1/counters", headers=web.auth(), timeout=5).json()
    path = f"/kling/callback/{job_id}/{token}"
    response = web.http.post(
        f"{web.url}{path}", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == status, response.text
    check_documented(openapi, "POST", path, response)
    assert callbacks_on_broker(web, 0) == []
    after = web.http.get(f"{web.url}/v1/counters", headers=web.auth(), timeout=5)
    check_documented(openapi, "GET", "/v1/counters", after)
    name = "callbacks_bad_token" if status == 404 else "callbacks_bad_body"
    assert after.json()["counters"][name] == counters["counters"].get(name, 0) + 1
    assert token not in response.text


def test_without_a_configured_secret_the_generated_one_verifies(web: Web, tmp_path: Path) -> None:
    """No TRYON_CALLBACK_SECRET: the secret generated once in the store is the one used."""
    env = {k: v for k, v in web.deployment.env.items() if not k.startswith("TRYON_CALLBACK_SECRET")}
    job_id = "web-cb-generated"
    with web_process(env, tmp_path / "web-nosecret.log") as base:
        old_token = requests.post(f"{base}{_callback_path(job_id)}", json=_task(job_id), timeout=10)
        # The web process generated it for the first callback and kept it in the store.
        generated = web.deployment.store().secrets.get(
            GENERATED_SECRET_NAME, lambda: pytest.fail("the web process kept no secret")
        )
        fresh = requests.post(
            f"{base}{_callback_path(job_id, generated)}", json=_task(job_id), timeout=10
        )
    assert old_token.status_code == 404  # the configured secret is gone
    assert fresh.status_code == 200
    assert len(callbacks_on_broker(web, 1)) == 1


# ----------------------------------------------------------------- errors & OpenAPI ---
ERRORS = {
    "unknown-route": ("GET", "/nothing-here", 404, "not_found"),
    "wrong-method": ("DELETE", "/v1/jobs", 405, "method_not_allowed"),
    "callback-without-token": ("POST", "/kling/callback/some-job", 404, "not_found"),
    "unknown-job": ("GET", "/v1/jobs/no-such-job", 404, "not_found"),
}


@pytest.mark.parametrize(("method", "path", "status", "code"), ERRORS.values(), ids=ERRORS)
def test_errors_are_json(web: Web, method: str, path: str, status: int, code: str) -> None:
    """404 and 405 answer the JSON error shape, never HTML."""
    response = web.http.request(method, f"{web.url}{path}", headers=web.auth(), timeout=5)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code


def test_openapi_documents_every_route_and_the_bearer_scheme(
    web: Web, openapi: dict[str, Any]
) -> None:
    """Every route of the app is in the document, with its security, and every $ref resolves."""
    app = create_web_app(web.deployment.settings)
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    app.state.services.close()
    documented = {(path, method) for path, item in openapi["paths"].items() for method in item}
    assert served == documented
    assert openapi["openapi"].startswith("3.1")
    scheme = openapi["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert openapi["security"] == [{"bearerAuth": []}]
    public = {"/healthz", "/readyz", "/openapi.json", "/kling/callback/{job_id}/{token}"}
    for path, item in openapi["paths"].items():
        for operation in item.values():
            assert operation["responses"], path
            assert (operation.get("security") == []) == (path in public), path
            assert "500" in operation["responses"], path
    # Every schema of the document is valid JSON Schema, and every $ref in it resolves.
    root = {"components": openapi["components"]}
    for name in openapi["components"]["schemas"]:
        validator = jsonschema.Draft202012Validator(
            {**root, "$ref": f"#/components/schemas/{name}"}
        )
        jsonschema.Draft202012Validator.check_schema(openapi["components"]["schemas"][name])
        with suppress(jsonschema.ValidationError):
            validator.validate({})  # walks the refs it needs; a broken one raises otherwise
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(openapi))
    assert set(refs) <= set(openapi["components"]["schemas"])


def test_openapi_job_schema_is_the_contract(openapi: dict[str, Any]) -> None:
    """The documented job message accepts a valid job and refuses a misspelt field."""
    root = {"components": openapi["components"], "$ref": "#/components/schemas/JobMessage"}
    validator = jsonschema.Draft202012Validator(root)
    validator.validate(sample_job("web-schema"))
    assert not validator.is_valid({**sample_job("web-schema"), "model": "x"})
    request_body = openapi["paths"]["/v1/jobs"]["post"]["requestBody"]
    schema = request_body["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/JobMessage"} in schema["oneOf"]
    assert openapi["components"]["schemas"]["JobBatch"]["maxItems"] == MAX_BATCH
