"""`POST /v1/jobs/{job_id}/cancel` and `/retry` on a real `tryon web` (RabbitMQ,
PostgreSQL, the emulator): each answer as documented, the workers told of what was
cancelled, and a retry run by a real worker."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness import wait_until
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.store import JobStore, NewJob
from web_service import (
    Web,
    check_documented,
    sample_job,
    served_openapi,
    tasks_queue_messages,
    web_stack,
)

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


def _retry(web: Web, job_id: str, body: dict[str, Any] | None = None) -> Any:
    return web.http.post(
        f"{web.url}/v1/jobs/{job_id}/retry",
        headers={**web.auth(), "Content-Type": "application/json"},
        data=json.dumps(body) if body is not None else b"",
        timeout=30,
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


def test_a_retry_is_refused_for_live_jobs_and_jobs_without_their_photos(
    web: Web, openapi: dict[str, Any], store: JobStore
) -> None:
    """409 `not_retryable` for a queued job, and for a failed job whose photos are gone
    when none are given; 422 for a body that is not a RetryRequest."""
    live, failed = f"live-{uuid.uuid4().hex[:8]}", f"failed-{uuid.uuid4().hex[:8]}"
    store.intake.accept([NewJob(live, body=BODY)])
    store.intake.reject(failed, code="invalid_job", message="bad photo")
    for job_id, words in ((live, "only failed, rejected or cancelled"), (failed, "give")):
        response = _retry(web, job_id)
        assert response.status_code == 409, response.text
        check_documented(openapi, "POST", f"/v1/jobs/{job_id}/retry", response)
        assert response.json()["error"]["code"] == "not_retryable"
        assert words in response.json()["error"]["message"]
    wrong = _retry(web, failed, {"human": "x"})
    assert wrong.status_code == 422
    check_documented(openapi, "POST", f"/v1/jobs/{failed}/retry", wrong)
    assert _retry(web, "nobody-has-this").status_code == 404


def test_a_cancelled_job_is_retried_with_its_photos_and_linked_both_ways(
    web: Web, openapi: dict[str, Any], store: JobStore
) -> None:
    """202 with the new id; a worker runs the retry to success; the new record names the
    old one (`retry_of`) and the old one lists it (`retried_by`); the metadata is kept."""
    job_id = f"again-{uuid.uuid4().hex[:8]}"
    message = sample_job(job_id)
    store.intake.accept(
        [
            NewJob(
                job_id,
                body={"human_image": message["human_image"], "cloth_image": message["cloth_image"]},
                metadata={"sku": "1234"},
            )
        ]
    )
    store.lifecycle.cancel([job_id], reason="by hand")
    response = _retry(web, job_id)
    assert response.status_code == 202, response.text
    check_documented(openapi, "POST", f"/v1/jobs/{job_id}/retry", response)
    new_id = response.json()["job_id"]
    assert new_id == f"{job_id}-r1"
    assert "unit" in response.json()["estimate"]

    worker = web.deployment.start_worker(concurrency=1, name="retry-worker")
    try:
        wait_until(
            lambda: (r := store.get(new_id)) is not None and r.terminal, 90, 0.5, "the retry"
        )
    finally:
        worker.stop()
    new = store.get(new_id)
    assert new is not None and new.state == "succeeded"
    assert (new.retry_of, new.metadata) == (job_id, {"sku": "1234"})
    old = web.http.get(f"{web.url}/v1/jobs/{job_id}", headers=web.auth(), timeout=5).json()
    assert old["retried_by"] == [new_id]


def test_the_listing_filters_pages_and_refuses_what_it_cannot_read(
    web: Web, openapi: dict[str, Any], store: JobStore
) -> None:
    """GET /v1/jobs: a metadata filter with state, pages of 2 by cursor, each answer as
    documented; a bad state, limit or cursor is 422 `bad_query`."""
    run = uuid.uuid4().hex[:8]
    ids = [f"list-{run}-{n}" for n in range(5)]
    for job_id in ids:
        store.intake.accept([NewJob(job_id, body=BODY, metadata={"run": run})])
    store.lifecycle.cancel([ids[1]], reason="by hand")

    def page(**params: Any) -> Any:
        response = web.http.get(f"{web.url}/v1/jobs", params=params, headers=web.auth(), timeout=10)
        check_documented(openapi, "GET", "/v1/jobs", response)
        return response

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"meta": f"run={run}", "limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        body = page(**params).json()
        seen += [record["job_id"] for record in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    cancelled = page(meta=f"run={run}", state="cancelled").json()
    assert [r["job_id"] for r in cancelled["jobs"]] == [ids[1]]
    for bad in ({"state": "nope"}, {"limit": "0"}, {"cursor": "zzz"}, {"meta": "novalue"}):
        refused = page(**bad)
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["code"] == "bad_query"
