"""The job lifecycle's routes: `POST /v1/jobs/{job_id}/cancel`, `POST /v1/jobs/{job_id}/retry`.

Kept apart from `web.app` so that its routes join the app's list with one line. The
answer comes from the store's fenced move (`pipeline.lifecycle.cancel_jobs`): what it
says is what happened, whatever a worker was doing with the job at that moment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kolors_tryon.errors import JobNotFound, TryonError
from kolors_tryon.jobs import JobRejected, Problem
from kolors_tryon.pipeline.lifecycle import AT_KLING_NOTE, retry_estimate
from kolors_tryon.store.lifecycle import CancelOutcome
from kolors_tryon.web.bodies import CancelResult, RetryAccepted, RetryRequest
from kolors_tryon.web.errors import StoreUnavailable
from kolors_tryon.web.services import WebServices

__all__ = ["lifecycle_routes"]

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]

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
    try:
        answer = await run_in_threadpool(services.cancel_job, job_id)
    except JobNotFound:
        raise
    except Exception as exc:
        log.error("cancelling job failed: %s", type(exc).__name__)
        raise StoreUnavailable from exc
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
    try:
        plan = await run_in_threadpool(
            services.retry_job, job_id, photos.human_image, photos.cloth_image
        )
    except TryonError:
        raise
    except Exception as exc:
        log.error("retrying job failed: %s", type(exc).__name__)
        raise StoreUnavailable from exc
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


def lifecycle_routes(requires_key: Callable[[Endpoint], Endpoint]) -> list[Route]:
    """The lifecycle's routes, each behind the app's key check."""
    return [
        Route("/v1/jobs/{job_id}/cancel", requires_key(cancel_job), methods=["POST"]),
        Route("/v1/jobs/{job_id}/retry", requires_key(retry_job), methods=["POST"]),
    ]
