"""The batch routes of `tryon web`: open a batch with its jobs, read it, list, export.

Kept apart from web/app.py (which registers them) so that each stays small; they use its
key guard and its intake of job messages, the same as `POST /v1/jobs`.
"""

from __future__ import annotations

import json
import logging
import uuid

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kolors_tryon.web.app import (
    _accept_items,
    _answer,
    _batch_status,
    _is_json,
    _message_problem,
    _requires_key,
    _services,
)
from kolors_tryon.web.bodies import BatchCreated, BatchPage, NewBatch
from kolors_tryon.web.errors import NotJson, store_call

log = logging.getLogger(__name__)

PAGE_DEFAULT, PAGE_MAX = 50, 500


@_requires_key
async def post_batches(request: Request) -> Response:
    """Open a batch of the key's producer and queue its jobs (each validated alone)."""
    services = _services(request)
    if not _is_json(request):
        raise NotJson
    try:
        body = NewBatch.model_validate_json(await request.body())
    except ValidationError as exc:
        services.count("jobs_refused")
        raise _message_problem("batch", _first_error(exc)) from None
    if len(body.jobs) > services.settings.web_max_batch_jobs:
        raise _message_problem(
            "batch", f"at most {services.settings.web_max_batch_jobs} jobs in one request"
        )
    batch_id = body.batch_id or f"batch-{uuid.uuid4().hex}"
    producer = request.state.producer
    await store_call("opening a batch", services.open_batch, producer, batch_id, body.name)
    items = [json.dumps({**job, "batch_id": batch_id}) for job in body.jobs]
    summary = await _accept_items(services, items, producer)
    created = BatchCreated(batch_id=batch_id, **summary.model_dump())
    return _answer(created, _batch_status(summary.results), {"Location": f"/v1/batches/{batch_id}"})


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


@_requires_key
async def get_batch(request: Request) -> Response:
    """The producer's batch: counts by state, units spent, progress; or 404."""
    services = _services(request)
    batch_id = request.path_params["batch_id"]
    batch = await store_call(
        "reading a batch", services.get_batch, batch_id, request.state.producer
    )
    return JSONResponse(batch.model_dump(mode="json"))


@_requires_key
async def export_batch(request: Request) -> Response:
    """The producer's batch as CSV, one row per job; or 404."""
    services = _services(request)
    batch_id = request.path_params["batch_id"]
    text = await store_call(
        "exporting a batch", services.export_batch, batch_id, request.state.producer
    )
    return Response(text, media_type="text/csv; charset=utf-8")


@_requires_key
async def list_batches(request: Request) -> Response:
    """The producer's batches, newest first, a page at a time (`?limit=`, `?after=`)."""
    services = _services(request)
    text = request.query_params.get("limit", str(PAGE_DEFAULT))
    limit = int(text) if text.isdigit() else 0
    if not 1 <= limit <= PAGE_MAX:
        raise _message_problem("limit", f"limit must be a whole number from 1 to {PAGE_MAX}")
    after = request.query_params.get("after") or None
    batches = await store_call(
        "listing batches", services.list_batches, request.state.producer, limit, after
    )
    cursor = batches[-1].batch_id if len(batches) == limit else None
    page = BatchPage(batches=[b.model_dump(mode="json") for b in batches], next=cursor)
    return _answer(page)


async def batches(request: Request) -> Response:
    """`/v1/batches`: one route for both methods, so that a 405 lists both in `Allow`."""
    if request.method == "POST":
        return await post_batches(request)
    return await list_batches(request)


BATCH_ROUTES = [
    Route("/v1/batches", batches, methods=["GET", "POST"]),
    Route("/v1/batches/{batch_id}", get_batch, methods=["GET"]),
    Route("/v1/batches/{batch_id}/export", export_batch, methods=["GET"]),
]
