"""The job lifecycle's routes: `GET /v1/jobs` (a filtered listing), `POST
/v1/jobs/{job_id}/cancel`, `POST /v1/jobs/{job_id}/retry`.

Kept apart from `web.app` so that its routes join the app's list with one line. The
answer comes from the store's fenced move (`pipeline.lifecycle.cancel_jobs`): what it
says is what happened, whatever a worker was doing with the job at that moment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Final, TypeVar

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kolors_tryon.jobs import JobRejected, Problem
from kolors_tryon.jobs.models import parse_instant
from kolors_tryon.pipeline.lifecycle import AT_KLING_NOTE, retry_estimate
from kolors_tryon.store import JobState
from kolors_tryon.store.lifecycle import CancelOutcome
from kolors_tryon.store.listing import JobFilter
from kolors_tryon.web.bodies import CancelResult, JobList, RetryAccepted, RetryRequest
from kolors_tryon.web.errors import ListingRefused, store_call
from kolors_tryon.web.responses import RecordResponse
from kolors_tryon.web.services import WebServices

__all__ = ["lifecycle_routes"]

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")

LISTING_DEFAULT_LIMIT: Final = 50
LISTING_MAX_LIMIT: Final = 500

_MESSAGES = {
    CancelOutcome.CANCELLED: "cancelled: no create was sent to Kling, and none will be",
    CancelOutcome.AT_KLING: AT_KLING_NOTE,
    CancelOutcome.ENDED: "the job had already ended: nothing to cancel",
}


async def cancel_job(request: Request) -> Response:
    """Cancel one job: 200 when cancelled, 409 when it is at Kling or already ended."""
    services = request.app.state.services
    assert isinstance(services, WebServices)
    job_id = request.path_params["job_id"]
    answer = await store_call(
        "cancelling a job", services.cancel_job, job_id, request.state.producer
    )
    assert answer.record is not None
    body = CancelResult(
        job_id=job_id,
        outcome=answer.outcome.value,
        state=str(answer.record.state),
        charged=answer.outcome is CancelOutcome.AT_KLING,
        message=_MESSAGES[answer.outcome],
    )
    status = 200 if answer.outcome is CancelOutcome.CANCELLED else 409
    return JSONResponse(body.json_body(), status_code=status)


async def retry_job(request: Request) -> Response:
    """Queue a new job retrying this one: 202, or 409 (`not_retryable`), 404, 422."""
    services = request.app.state.services
    assert isinstance(services, WebServices)
    job_id = request.path_params["job_id"]
    photos = _retry_request(await request.body())
    plan = await store_call(
        "retrying a job",
        services.retry_job,
        job_id,
        request.state.producer,
        photos.human_image,
        photos.cloth_image,
    )
    body = RetryAccepted(job_id=plan.job_id, retry_of=job_id, estimate=retry_estimate([plan]))
    return JSONResponse(
        body.json_body(), status_code=202, headers={"Location": f"/v1/jobs/{plan.job_id}"}
    )


def _retry_request(raw: bytes) -> RetryRequest:
    """The optional body of a retry (other photos); an empty body asks for none."""
    if not raw.strip():
        return RetryRequest()
    try:
        return RetryRequest.model_validate_json(raw)
    except ValidationError as exc:
        problems = [
            Problem(".".join(str(p) for p in error["loc"]) or "body", error["type"], error["msg"])
            for error in exc.errors(include_input=False)
        ]
        raise JobRejected(None, problems) from None


async def list_jobs(request: Request) -> Response:
    """A page of jobs, newest first, filtered by state, metadata and creation time."""
    services = request.app.state.services
    assert isinstance(services, WebServices)
    filters, cursor, limit = _listing_query(request)
    filters = replace(filters, producer=request.state.producer)  # its own jobs only
    page = await store_call("listing jobs", services.list_jobs, filters, cursor, limit)
    return RecordResponse(JobList(jobs=page.records, next_cursor=page.next_cursor).json_body())


def _listing_query(request: Request) -> tuple[JobFilter, str | None, int]:
    """The listing's query parameters, or `ListingRefused` naming the wrong one."""
    params = request.query_params
    state = params.get("state")
    if state is not None and state not in {s.value for s in JobState}:
        raise ListingRefused(f"state: {state!r} is not a job state")
    metadata: dict[str, str] = {}
    for pair in params.getlist("meta"):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ListingRefused(f"meta: give KEY=VALUE, not {pair!r}")
        if "\x00" in pair:
            raise ListingRefused("meta: a NUL character cannot be stored, so matches nothing")
        metadata[key] = value
    instants: dict[str, float | None] = {}
    for name in ("created_from", "created_before"):
        text = params.get(name)
        try:
            instants[name] = None if text is None else parse_instant(text).timestamp()
        except ValueError:
            raise ListingRefused(f"{name}: not an ISO 8601 instant") from None
    limit_text = params.get("limit", str(LISTING_DEFAULT_LIMIT))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= LISTING_MAX_LIMIT:
        raise ListingRefused(f"limit: give 1 to {LISTING_MAX_LIMIT}")
    filters = JobFilter(
        state=JobState(state) if state else None,
        metadata=metadata,
        created_from=instants["created_from"],
        created_before=instants["created_before"],
    )
    return filters, params.get("cursor"), int(limit_text)


def jobs_collection_route(
    post_jobs: Endpoint, requires_key: Callable[[Endpoint], Endpoint]
) -> Route:
    """`/v1/jobs`: POST queues jobs (the app's intake), GET lists them; one route, so a
    405 there names both methods in its `Allow`."""
    listing = requires_key(list_jobs)

    async def jobs(request: Request) -> Response:
        return await (listing if request.method in ("GET", "HEAD") else post_jobs)(request)

    return Route("/v1/jobs", jobs, methods=["GET", "POST"])


def lifecycle_routes(requires_key: Callable[[Endpoint], Endpoint]) -> list[Route]:
    """The lifecycle's routes on one job, each behind the app's key check."""
    return [
        Route("/v1/jobs/{job_id}/cancel", requires_key(cancel_job), methods=["POST"]),
        Route("/v1/jobs/{job_id}/retry", requires_key(retry_job), methods=["POST"]),
    ]
