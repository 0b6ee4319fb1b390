"""`POST /v1/jobs/{job_id}/cancel` on a real `tryon web` (RabbitMQ, PostgreSQL): each
answer as documented, and the workers told of what was cancelled."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kolors_tryon.config.task_names import TaskName
from kolors_tryon.store import JobStore, NewJob
from web_service import Web, check_documented, served_openapi, tasks_queue_messages, web_stack

BODY = {"human_image": "aGk=", "cloth_image": "aGk="}


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The service with its namespace and database, no worker: jobs stay where put."""
    with web_stack(tmp_path_factory.mktemp("web-lifecycle")) as web:
        yield web


@pytest.fixture(scope="module")
def openapi(web: Web) -> dict[str, Any]:
    return served_openapi(web)


@pytest.fixture
def store(web: Web) -> Iterator[JobStore]:
    store = web.deployment.store()
    yield store
    store.dispose()


def _cancel(web: Web, job_id: str, **headers: str) -> Any:
    return web.http.post(
        f"{web.url}/v1/jobs/{job_id}/cancel", headers=headers or web.auth(), timeout=10
    )


def test_a_queued_job_is_cancelled_and_the_workers_are_told(
    web: Web, openapi: dict[str, Any], store: JobStore
) -> None:
    """200 `cancelled`, the record says so, and one `tryon.cancelled` message names it."""
    job_id = f"cancel-{uuid.uuid4().hex[:8]}"
    store.intake.accept([NewJob(job_id, body=BODY)])
    tasks_queue_messages(web)  # drain what earlier tests left
    response = _cancel(web, job_id)
    assert response.status_code == 200, response.text
    check_documented(openapi, "POST", f"/v1/jobs/{job_id}/cancel", response)
    assert response.json()["outcome"] == "cancelled"
    assert response.json()["charged"] is False
    record = web.http.get(f"{web.url}/v1/jobs/{job_id}", headers=web.auth(), timeout=5).json()
    assert record["state"] == "cancelled"
    assert record["error"]["code"] == "cancelled"
    sent = [
        body
        for headers, body in tasks_queue_messages(web)
        if headers.get("task") == TaskName.CANCELLED
    ]
    assert sent and sent[0][0] == [[job_id]]

    again = _cancel(web, job_id)
    assert again.status_code == 409
    check_documented(openapi, "POST", f"/v1/jobs/{job_id}/cancel", again)
    assert again.json()["outcome"] == "ended"


def test_a_job_whose_create_may_be_at_kling_is_not_cancelled(
    web: Web, openapi: dict[str, Any], store: JobStore
) -> None:
    """409 `at_kling`, charged: the answer says it runs to its end and is charged."""
    job_id = f"at-kling-{uuid.uuid4().hex[:8]}"
    store.intake.accept([NewJob(job_id, body=BODY)])
    claims = store.claims.next(100, lease_seconds=60)
    owner = next(c.owner for c in claims if c.job_id == job_id)
    assert store.submits.record_intent(job_id, owner, window=30)
    response = _cancel(web, job_id)
    assert response.status_code == 409, response.text
    check_documented(openapi, "POST", f"/v1/jobs/{job_id}/cancel", response)
    body = response.json()
    assert (body["outcome"], body["state"], body["charged"]) == ("at_kling", "submitting", True)
    assert "charged" in body["message"]


def test_unknown_jobs_and_missing_keys_are_refused(web: Web, openapi: dict[str, Any]) -> None:
    """404 for a job nobody has; 401 without the key."""
    unknown = _cancel(web, "nobody-has-this")
    assert unknown.status_code == 404
    check_documented(openapi, "POST", "/v1/jobs/nobody-has-this/cancel", unknown)
    refused = _cancel(web, "nobody-has-this", Authorization="Bearer wrong")
    assert refused.status_code == 401
