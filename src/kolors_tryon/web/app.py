"""`create_web_app(settings)`: the ASGI application of `tryon web` (Starlette).

Routes (README, "HTTP service"; the OpenAPI document at `/openapi.json` is the contract):

- `GET /healthz`: the process is alive. `GET /readyz`: the broker and the store answer.
- `POST /v1/jobs`: one job message, or a JSON array of them. Validated at the door with
  `validate_job` exactly as the worker validates, so bad input is answered 422 at once
  and never costs a credit; valid jobs are published to `<ns>.jobs` (confirmed).
- `GET /v1/jobs`: a filtered listing, newest first, by cursor (`web.lifecycle`).
- `GET /v1/jobs/{job_id}`: the job record.
- `POST /v1/jobs/{job_id}/cancel`: cancel a job not yet at Kling (`web.lifecycle`).
- `POST /kling/callback/{job_id}/{token}`: Kling's callback, authenticated by the token
  in its URL, forwarded to the workers as the Celery task `tryon.callback`.
- `GET /v1/counters`: this process's counters (accepted jobs, refused callbacks...).

Blocking work (validation, which decodes images; publishing; store queries) runs in the
thread pool, so a slow request never holds the event loop. With URL preflight on,
validation fetches producers' URLs and may take its whole deadline on a slow host: it
runs on bounded threads of its own (`web.slots`, `TRYON_WEB_PREFLIGHT_SLOTS`), answered
503 with Retry-After when they are all busy, so that it can never take the threads the
health checks, job reads and Kling's callbacks need.

Routes build their bodies from the models of `web.bodies` (the schemas of /openapi.json)
and refuse by raising: one table in `web.errors` answers every error class.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kolors_tryon.config import Settings
from kolors_tryon.errors import TryonError
from kolors_tryon.jobs import JobRejected, Problem, validate_job
from kolors_tryon.kling import ServerError
from kolors_tryon.kling.models import parse_task
from kolors_tryon.kling.signatures import verify_callback_signature
from kolors_tryon.ops.exposition import CONTENT_TYPE, metrics_registry, render
from kolors_tryon.pipeline.callback_tokens import CALLBACK_PATH_PREFIX, verify_callback_token
from kolors_tryon.web.access_log import AccessLogMiddleware
from kolors_tryon.web.auth import producer_of_key
from kolors_tryon.web.bodies import (
    BatchItemAccepted,
    BatchItemRefused,
    BatchResult,
    Body,
    CallbackReceived,
    Check,
    Checks,
    Counters,
    Health,
    JobAccepted,
    Readiness,
)
from kolors_tryon.web.console import console_mount, console_status
from kolors_tryon.web.errors import (
    ERRORS,
    BodyTooLarge,
    BrokerUnavailable,
    CallbackRefused,
    IntakeOff,
    KeyRefused,
    NotJson,
    StoreUnavailable,
    UnknownCallbackUrl,
    error_answer,
    handle_error,
    store_call,
)
from kolors_tryon.web.lifecycle import jobs_collection_route, lifecycle_routes
from kolors_tryon.web.limits import BodyLimitMiddleware
from kolors_tryon.web.openapi import openapi_document
from kolors_tryon.web.responses import RecordResponse as _RecordResponse
from kolors_tryon.web.services import WebServices
from kolors_tryon.web.slots import SlotsFull

__all__ = ["CALLBACK_MAX_BODY_BYTES", "create_web_app"]

log = logging.getLogger(__name__)

# A callback body is a task object of a few KB; nobody needs more from an
# unauthenticated sender, whatever the job intake allows.
CALLBACK_MAX_BODY_BYTES: Final = 1024 * 1024
_JSON_TYPES: Final = ("application/json", "application/problem+json")
_WS: Final = " \t\r\n"

Endpoint = Callable[[Request], Awaitable[Response]]


def _answer(body: Body, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A body of `web.bodies` as the JSON answer (the schema `/openapi.json` gives it)."""
    return JSONResponse(body.json_body(), status_code=status, headers=headers)


def _services(request: Request) -> WebServices:
    services = request.app.state.services
    assert isinstance(services, WebServices)
    return services


# --------------------------------------------------------------------------- auth -------
def _requires_key(endpoint: Endpoint) -> Endpoint:
    """Refuse with IntakeOff when no key is configured, KeyRefused without a matching one."""

    async def guarded(request: Request) -> Response:
        services = _services(request)
        keys = services.settings.api_keys
        if not keys:
            raise IntakeOff
        producer = producer_of_key(
            request.headers.get("authorization"), services.settings.api_key_producers()
        )
        if producer is None:
            services.count("auth_refused")
            raise KeyRefused
        request.state.producer = producer  # whose jobs this request may write and read
        return await endpoint(request)

    guarded.__name__ = endpoint.__name__
    guarded.__doc__ = endpoint.__doc__
    return guarded


# --------------------------------------------------------------------------- health -----
async def healthz(request: Request) -> Response:
    """Live: the process answers. No dependency is checked (that is /readyz)."""
    return _answer(Health(status="ok"))


async def readyz(request: Request) -> Response:
    """Ready: the broker accepts a connection and the store answers a query.

    Workers are not counted (`tryon health` counts them): this process can take jobs
    while none runs, since accepted jobs wait durably on the queue, and a load balancer
    that dropped the door for it would refuse jobs that would have been kept.
    """
    services = _services(request)
    timeout = services.settings.http_connect_timeout + 1.0
    checks: dict[str, Check] = {}
    for name, check in (("broker", services.check_broker), ("store", services.check_store)):
        try:
            with anyio.fail_after(timeout):
                await run_in_threadpool(check)
            checks[name] = Check(ok=True)
        except Exception as exc:
            # The type only: a driver's message can hold the URL and its password.
            error = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            checks[name] = Check(ok=False, error=error)
    ready = all(check.ok for check in checks.values())
    readiness = Readiness(status="ready" if ready else "unavailable", checks=Checks(**checks))
    return _answer(readiness, 200 if ready else 503)


async def openapi_json(request: Request) -> Response:
    """The OpenAPI 3.1 document of this service."""
    return JSONResponse(request.app.state.openapi)


# --------------------------------------------------------------------------- intake -----
def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def _message_problem(rule: str, message: str) -> JobRejected:
    return JobRejected(None, [Problem("message", rule, message)])


def _split_array(text: str, limit: int) -> list[str]:
    """The raw JSON text of each item of a JSON array, so each is validated as sent.

    Raises:
        JobRejected: the array is not valid JSON, empty, or longer than `limit`.
    """
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in _WS:
            i += 1
        return i

    i = skip(0)
    assert text[i] == "["
    i = skip(i + 1)
    items: list[str] = []
    if i < len(text) and text[i] == "]":
        i += 1
    else:
        while True:
            try:
                _, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise _message_problem(
                    "json", f"is not a valid JSON array ({exc.msg} at char {exc.pos})"
                ) from None
            except (ValueError, RecursionError):
                raise _message_problem("json", "is not a JSON array that can be read") from None
            items.append(text[i:end])
            if len(items) > limit:
                raise _message_problem(
                    "max_items", f"holds more than {limit} jobs; send at most {limit} per request"
                )
            i = skip(end)
            if i < len(text) and text[i] == ",":
                i = skip(i + 1)
                continue
            if i < len(text) and text[i] == "]":
                i += 1
                break
            raise _message_problem("json", f"is not a valid JSON array (char {i})")
    if skip(i) != len(text):
        raise _message_problem("json", "has data after the JSON array")
    if not items:
        raise _message_problem("min_items", "is an empty array; send at least one job")
    return items


def _batch_text(body: bytes) -> str | None:
    """The body as text when it is a JSON array (a batch); None for a single job."""
    head = body[:4096].removeprefix(b"\xef\xbb\xbf").lstrip(_WS.encode())
    if not head.startswith(b"["):
        return None
    try:
        return body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None  # validate_job names the encoding problem


async def _accept_one(services: WebServices, raw: bytes | str, producer: str) -> JobAccepted:
    """Validate and queue one job message.

    Raises:
        JobRejected: the job is invalid.
        SlotsFull: every URL preflight slot is busy.
        BrokerUnavailable: the broker did not take the job.
    """
    try:
        if services.options.url_preflight:
            # Every validation, as one call: a Base64-only job holds a slot for its decode.
            valid = await services.preflight_slots.run(validate_job, raw, services.options)
        else:
            valid = await run_in_threadpool(validate_job, raw, services.options)
    except SlotsFull:
        services.count("jobs_preflight_busy")
        raise
    except JobRejected:
        services.count("jobs_refused")
        raise
    try:
        job_id = await run_in_threadpool(services.publish_job, valid, producer)
    except Exception as exc:
        log.error("publishing job %s failed: %s", valid.job_id, type(exc).__name__)
        raise BrokerUnavailable from exc
    services.count("jobs_accepted")
    return JobAccepted(job_id=job_id)


@_requires_key
async def post_jobs(request: Request) -> Response:
    """Validate one job (a JSON object) or a batch (a JSON array) and queue the valid ones."""
    services = _services(request)
    if not _is_json(request):
        raise NotJson
    body = await request.body()
    text = _batch_text(body)
    if text is None:
        job = await _accept_one(services, body, request.state.producer)
        return _answer(job, 202, {"Location": f"/v1/jobs/{job.job_id}"})

    try:
        items = _split_array(text, services.settings.web_max_batch_jobs)
    except JobRejected:
        services.count("jobs_refused")
        raise
    summary = await _accept_items(services, items, request.state.producer)
    return _answer(summary, _batch_status(summary.results))


async def _accept_items(services: WebServices, items: list[str], producer: str) -> BatchResult:
    """Validate and queue each item on its own: one result per item, in their order."""
    results: list[BatchItemAccepted | BatchItemRefused] = []
    broker_down: BrokerUnavailable | None = None
    for index, item in enumerate(items):
        try:
            if broker_down is not None:  # do not wait out the publish retries once per item
                raise broker_down
            job = await _accept_one(services, item, producer)
            results.append(BatchItemAccepted(index=index, status=202, job_id=job.job_id))
        except TryonError as exc:
            if isinstance(exc, BrokerUnavailable):
                broker_down = exc
            refused = error_answer(exc)
            results.append(
                BatchItemRefused(index=index, status=refused.status, error=refused.detail)
            )
    accepted = sum(1 for r in results if r.status == 202)
    return BatchResult(accepted=accepted, refused=len(results) - accepted, results=results)


def _batch_status(results: list[BatchItemAccepted | BatchItemRefused]) -> int:
    """202 when every item was queued; 422 when every item was invalid (nothing happened,
    and a client reading the status alone must not take it for a partial success); 207
    otherwise, with one result per item to read."""
    statuses = {result.status for result in results}
    if statuses == {202}:
        return 202
    if statuses == {422}:
        return 422
    return 207


@_requires_key
async def get_job(request: Request) -> Response:
    """The job record, or JobNotFound (404)."""
    services = _services(request)
    job_id = request.path_params["job_id"]
    record = await store_call("reading a job", services.get_job, job_id, request.state.producer)
    return _RecordResponse(record.to_json_dict())


@_requires_key
async def get_metrics(request: Request) -> Response:
    """Prometheus metrics: this process's counters and the store's gauges (bearer key).

    Every route but the health checks is authenticated; Prometheus sends the key with
    `authorization: {credentials: <key>}` in its scrape config.
    """
    registry = request.app.state.metrics
    body = await run_in_threadpool(render, registry)
    return Response(body, media_type=CONTENT_TYPE)


@_requires_key
async def get_counters(request: Request) -> Response:
    """This process's counters since it started (each copy of the service counts its own)."""
    return _answer(Counters(counters=_services(request).counters_snapshot()))


# --------------------------------------------------------------------------- callback ---
async def kling_callback(request: Request) -> Response:
    """Kling's callback: verify the token, parse the task, hand it to the workers.

    Never calls Kling and never touches job state: the `tryon.callback` task does, with
    the same forward-only rules as polling. A refused callback is counted and logged
    (job id only, never the token) and answered like an unknown URL.
    """
    services = _services(request)
    job_id = request.path_params["job_id"]
    token = request.path_params["token"]
    try:
        secrets = (await run_in_threadpool(services.callback_secrets)).accepted
    except Exception as exc:  # the store is down: Kling may repeat it, polling catches it
        log.error("callback of job %r: secrets unavailable: %s", job_id[:64], type(exc).__name__)
        raise StoreUnavailable("try again later") from exc
    if not verify_callback_token(job_id, token, secrets):
        services.count("callbacks_bad_token")
        log.warning("callback refused: bad token for job %r", job_id[:64])
        raise UnknownCallbackUrl

    body = await request.body()
    # An account with signing secrets: Kling's Standard Webhooks signature as well.
    signing = services.kling_signing_secrets(request.query_params.get("account"))
    refused = signing and verify_callback_signature(request.headers, body, signing, now=time.time())
    if refused:
        services.count("callbacks_bad_signature")
        log.warning("callback refused for job %r: %s", job_id[:64], refused)
        raise UnknownCallbackUrl
    try:
        obj = json.loads(body)
        task = parse_task(obj)
    except (ValueError, RecursionError, ServerError) as exc:
        services.count("callbacks_bad_body")
        reason = str(exc) if isinstance(exc, ServerError) else "the body is not valid JSON"
        log.warning("callback refused for job %r: %s", job_id[:64], reason)
        raise CallbackRefused(reason) from None
    if task.external_task_id is not None and task.external_task_id != job_id:
        services.count("callbacks_bad_body")
        raise CallbackRefused("the task's external_task_id is not this URL's job")
    bare = obj if "task_id" in obj else obj["data"]  # unwrap a reseller's envelope
    try:
        await run_in_threadpool(services.forward_callback, job_id, dict(bare))
    except Exception as exc:
        log.error("forwarding callback of job %r failed: %s", job_id[:64], type(exc).__name__)
        raise BrokerUnavailable("try again later") from exc
    services.count("callbacks_forwarded")
    return _answer(CallbackReceived(received=True))


# --------------------------------------------------------------------------- the app ----
def batch_routes() -> list[Route]:
    """The batch routes (web/batch_routes.py), imported here rather than at the top: they
    use this module's guard and intake helpers, so they import it."""
    from kolors_tryon.web.batch_routes import BATCH_ROUTES

    return BATCH_ROUTES


def create_web_app(settings: Settings) -> Starlette:
    """The ASGI app of `tryon web`, with the store and broker connections it owns."""
    services = WebServices(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(services.ensure_schema)
        except Exception as exc:  # /readyz says so; requests retry it
            log.warning("job store not ready at start-up: %s", type(exc).__name__)
        try:
            yield
        finally:
            await run_in_threadpool(services.close)

    def limit_for(path: str) -> int:
        if path.startswith(CALLBACK_PATH_PREFIX + "/"):
            return min(CALLBACK_MAX_BODY_BYTES, settings.web_max_body_bytes)
        return settings.web_max_body_bytes

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        jobs_collection_route(post_jobs, _requires_key),
        Route("/v1/jobs/{job_id}", get_job, methods=["GET"]),
        *lifecycle_routes(_requires_key),
        *batch_routes(),
        Route("/v1/counters", get_counters, methods=["GET"]),
        Route("/metrics", get_metrics, methods=["GET"]),
        Route(CALLBACK_PATH_PREFIX + "/{job_id}/{token}", kling_callback, methods=["POST"]),
    ]
    # The review console (web/console/): mounted only when users are configured.
    console = console_mount(settings, services)
    routes.extend([console] if console is not None else [])
    log.info("%s", console_status(settings))
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(AccessLogMiddleware),
            Middleware(BodyLimitMiddleware, limit_for=limit_for),
        ],
        # Every error class of the table answers through it, but BodyTooLarge: the body
        # limit middleware answers that one itself, to close the connection as well.
        exception_handlers={cls: handle_error for cls in ERRORS if cls is not BodyTooLarge},
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.metrics = metrics_registry(settings, services.store)
    app.state.openapi = openapi_document(settings)
    return app
