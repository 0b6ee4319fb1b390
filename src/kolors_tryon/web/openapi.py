"""The OpenAPI 3.1 document of `tryon web`, served at `/openapi.json`.

The paths and operations are written out here; every schema comes from the models the
code uses, so it cannot drift: the job message from `job_json_schema()` (the intake
hands the raw bytes to `validate_job`, exactly as the worker does), the record from
`JobRecord`, and every other body from `web.bodies`, the models the routes build their
answers with. Their `$defs` are hoisted into `components/schemas` so that every `$ref`
resolves from the document's root.
"""

from __future__ import annotations

import copy
from importlib import metadata
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from kolors_tryon.config import Settings
from kolors_tryon.jobs import job_json_schema
from kolors_tryon.pipeline.callback_tokens import CALLBACK_PATH_PREFIX
from kolors_tryon.store import BatchRecord, JobRecord, JobState
from kolors_tryon.web.bodies import BODIES, REQUEST_BODIES

__all__ = ["SECURITY_SCHEME", "openapi_document"]

SECURITY_SCHEME: Final = "bearerAuth"
_REF: Final = "#/components/schemas/"


def _version() -> str:
    try:
        return metadata.version("kolors-tryon")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = _REF + value.removeprefix("#/$defs/")
            else:
                out[key] = _rewrite_refs(value)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node


def _hoist(name: str, schema: dict[str, Any], into: dict[str, Any]) -> None:
    """Put `schema` and its `$defs` into `into` (components/schemas), refs rewritten."""
    schema = _rewrite_refs(copy.deepcopy(schema))
    for def_name, definition in schema.pop("$defs", {}).items():
        if def_name in into and into[def_name] != definition:
            raise ValueError(f"two different schemas named {def_name}")
        into[def_name] = definition
    # `$id` would move the base of every `#/components/...` ref inside; `$schema` is the
    # document's dialect already (3.1: JSON Schema 2020-12).
    schema.pop("$id", None)
    schema.pop("$schema", None)
    into[name] = schema


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _schemas(settings: Settings) -> dict[str, Any]:
    """Every schema, from the models the code sends and reads, `$defs` hoisted."""
    schemas: dict[str, Any] = {}
    _hoist("JobMessage", job_json_schema(), schemas)
    sent: list[type[BaseModel]] = [JobRecord, BatchRecord, *BODIES]
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "serialization") for model in sent),
        *((model, "validation") for model in REQUEST_BODIES),
    ]
    for model, mode in modes:
        schema = model.model_json_schema(mode=mode, ref_template=_REF + "{model}")
        _hoist(model.__name__, schema, schemas)
    # The batch is a list of job messages, read item by item as raw text (never as a
    # model, so each item is validated exactly as sent); its cap is this deployment's.
    schemas["JobBatch"] = {
        "description": "Several job messages in one request, each validated alone.",
        "type": "array",
        "items": _ref("JobMessage"),
        "minItems": 1,
        "maxItems": settings.web_max_batch_jobs,
    }
    return schemas


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The whole document; the numbers in it (caps) are this deployment's settings."""
    cap = settings.web_max_body_bytes
    public: list[dict[str, list[str]]] = []
    unauthorized = _error("No or wrong API key (`WWW-Authenticate: Bearer`).")
    intake_off = _error("`intake_off`: no TRYON_API_KEYS configured; or a dependency is down.")
    too_large = _error(f"The body is larger than {cap} bytes (refused before it is read).")
    internal = _error("Unexpected error (details are logged, never returned).")
    job_id_param = {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "The job's id (its own `job_id`, or the derived `job-...`).",
    }
    batch_id_param = {
        "name": "batch_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "The producer's own batch id.",
    }
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness: the process answers",
                "tags": ["operations"],
                "security": public,
                "responses": {"200": _json(_ref("Health"), "Alive."), "500": internal},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: the broker and the job store answer",
                "tags": ["operations"],
                "security": public,
                "responses": {
                    "200": _json(_ref("Readiness"), "Ready."),
                    "503": _json(_ref("Readiness"), "A dependency failed; `checks` says which."),
                    "500": internal,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["operations"],
                "security": public,
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1."), "500": internal},
            }
        },
        "/v1/jobs": {
            "get": {
                "operationId": "listJobs",
                "summary": "Jobs, newest first, filtered, a page at a time",
                "description": (
                    "Newest first on (created_at, job_id); `next_cursor` gives the next "
                    "page (a keyset: pages stay stable while new jobs arrive, and as fast "
                    "at 1,000,000 jobs as at 100). Filters combine: `state`, `meta` "
                    "(`KEY=VALUE`, repeatable, compared as text), `created_from` "
                    "(inclusive) and `created_before` (exclusive). A cursor is opaque: "
                    "only one this service gave is read (422 otherwise)."
                ),
                "tags": ["jobs"],
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"type": "string", "enum": [s.value for s in JobState]},
                    },
                    {
                        "name": "meta",
                        "in": "query",
                        "style": "form",
                        "explode": True,
                        "schema": {
                            "type": "array",
                            "items": {"type": "string", "pattern": "^[^=\\u0000]+=[^\\u0000]*$"},
                        },
                        "description": "KEY=VALUE: the job's metadata holds KEY with VALUE.",
                    },
                    {
                        "name": "created_from",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "created_before",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    },
                ],
                "responses": {
                    "200": _json(_ref("JobList"), "A page of job records."),
                    "422": _error("`bad_query`: a parameter (or the cursor) cannot be read."),
                    "401": unauthorized,
                    "503": intake_off,
                    "500": internal,
                },
            },
            "post": {
                "operationId": "submitJobs",
                "summary": "Queue one job, or a batch (a JSON array)",
                "description": (
                    "The body is validated exactly as the worker validates a message from "
                    "the queue; an invalid job is answered 422 at once, naming each field "
                    "and rule, and is neither queued nor recorded. A valid job is "
                    "published to the jobs queue (confirmed) and answered 202 with its id "
                    "and a Location header. A batch (a JSON array of at most "
                    f"{settings.web_max_batch_jobs} messages) validates each item alone: "
                    "202 when every item was queued, 422 when every item was invalid, 207 "
                    "otherwise; each with one result per item. The same job sent twice is "
                    "one job. The body may "
                    f"be at most {cap} bytes, batch or not."
                ),
                "tags": ["jobs"],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"oneOf": [_ref("JobMessage"), _ref("JobBatch")]}
                        }
                    },
                },
                "responses": {
                    "202": {
                        **_json(
                            {"oneOf": [_ref("JobAccepted"), _ref("BatchResult")]},
                            "Queued: JobAccepted for one job, BatchResult for a batch.",
                        ),
                        "headers": {
                            "Location": {
                                "description": "One job: `/v1/jobs/{job_id}`.",
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    "207": _json(
                        _ref("BatchResult"),
                        "A batch partly queued, or refused for other reasons than invalid jobs.",
                    ),
                    "401": unauthorized,
                    "413": too_large,
                    "415": _error("The Content-Type is not JSON."),
                    "422": _json(
                        {"oneOf": [_ref("InvalidJob"), _ref("BatchResult")]},
                        "The job, or the batch as a whole, is invalid (InvalidJob), or every "
                        "item of a batch is (BatchResult, one result per item).",
                    ),
                    "503": _error(
                        "`intake_off` (no TRYON_API_KEYS), `broker_unavailable`, or "
                        "`preflight_busy` (every URL preflight slot is taken; Retry-After)."
                    ),
                    "500": internal,
                },
            },
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "A job's record",
                "tags": ["jobs"],
                "parameters": [job_id_param],
                "responses": {
                    "200": _json(_ref("JobRecord"), "The record."),
                    "401": unauthorized,
                    "404": _error(
                        "No job with this id (yet: a queued job appears once a worker took it)."
                    ),
                    "503": intake_off,
                    "500": internal,
                },
            }
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "summary": "Cancel a job that has not reached Kling",
                "description": (
                    "A job not yet at Kling (queued, or being submitted with no create on "
                    "its way) moves to `cancelled` (event `job.cancelled`, its webhook): no "
                    "create is ever sent for it. A job whose create may have reached Kling "
                    "cannot be stopped there (the API has no cancel): the answer is 409 "
                    "`at_kling`, and the job runs to its end and is charged. No body."
                ),
                "tags": ["jobs"],
                "parameters": [job_id_param],
                "responses": {
                    "200": _json(_ref("CancelResult"), "Cancelled (`outcome: cancelled`)."),
                    "401": unauthorized,
                    "404": _error("No job with this id."),
                    "409": _json(
                        _ref("CancelResult"),
                        "Not cancelled: `at_kling` (it will be charged) or `ended`.",
                    ),
                    "503": intake_off,
                    "500": internal,
                },
            }
        },
        "/v1/batches": {
            "post": {
                "operationId": "createBatch",
                "summary": "Open a batch and queue its jobs",
                "description": (
                    "Opens a batch of the key's producer (`batch_id`, or `batch-<uuid>`) and "
                    "queues each job of `jobs` with that `batch_id`, each validated alone as "
                    "in `POST /v1/jobs`: 202 when every job was queued, 422 when every job "
                    "was invalid, 207 otherwise, each with one result per job. At most "
                    f"{settings.web_max_batch_jobs} jobs a request (send more requests with "
                    "the same `batch_id`)."
                ),
                "tags": ["batches"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NewBatch")}},
                },
                "responses": {
                    "202": {
                        **_json(_ref("BatchCreated"), "Opened; every job queued."),
                        "headers": {
                            "Location": {
                                "description": "`/v1/batches/{batch_id}`.",
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    "207": _json(_ref("BatchCreated"), "Opened; some jobs refused."),
                    "401": unauthorized,
                    "413": too_large,
                    "415": _error("The Content-Type is not JSON."),
                    "422": _json(
                        {"oneOf": [_ref("InvalidJob"), _ref("BatchCreated")]},
                        "The request is not a batch (InvalidJob), or every job is invalid.",
                    ),
                    "503": _error(
                        "`intake_off`, `broker_unavailable`, `store_unavailable` or "
                        "`preflight_busy`."
                    ),
                    "500": internal,
                },
            },
            "get": {
                "operationId": "listBatches",
                "summary": "The producer's batches, newest first",
                "description": (
                    "A page of the batches of the key's producer (another producer's are "
                    "never listed). `next` is the cursor of the following page."
                ),
                "tags": ["batches"],
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "The `next` cursor of the previous page.",
                    },
                ],
                "responses": {
                    "200": _json(_ref("BatchPage"), "A page of BatchRecord objects."),
                    "422": _json(_ref("InvalidJob"), "`limit` is not from 1 to 500."),
                    "401": unauthorized,
                    "503": intake_off,
                    "500": internal,
                },
            },
        },
        "/v1/batches/{batch_id}": {
            "get": {
                "operationId": "getBatch",
                "summary": "A batch: counts by state, units spent, progress",
                "tags": ["batches"],
                "parameters": [batch_id_param],
                "responses": {
                    "200": _json(_ref("BatchRecord"), "The batch."),
                    "401": unauthorized,
                    "404": _error("No batch with this id for this key's producer."),
                    "503": intake_off,
                    "500": internal,
                },
            }
        },
        "/v1/jobs/{job_id}/retry": {
            "post": {
                "operationId": "retryJob",
                "summary": "Retry a failed, rejected or cancelled job as a new job",
                "description": (
                    "Queues a new job (`{job_id}-rN`) with the same model, metadata, priority "
                    "and webhook target, linked by `retry_of` (the old record lists it in "
                    "`retried_by`). The same photos are sent again while the store keeps "
                    "them (a cancelled job); a job that reached Kling lost them at "
                    "submission: give `human_image` and `cloth_image`. One try-on: at most "
                    "one unit."
                ),
                "tags": ["jobs"],
                "parameters": [job_id_param],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("RetryRequest")}},
                },
                "responses": {
                    "202": {
                        **_json(_ref("RetryAccepted"), "The retry is queued."),
                        "headers": {
                            "Location": {
                                "description": "`/v1/jobs/{new job_id}`.",
                                "schema": {"type": "string"},
                            }
                        },
                    },
                    "401": unauthorized,
                    "404": _error("No job with this id."),
                    "409": _error(
                        "`not_retryable`: the job is not failed, rejected or cancelled, or "
                        "its photos are gone and none were given."
                    ),
                    "422": _json(_ref("InvalidJob"), "The body or the photos given are invalid."),
                    "503": _error("`intake_off`, `broker_unavailable` or `store_unavailable`."),
                    "500": internal,
                },
            }
        },
        "/v1/batches/{batch_id}/export": {
            "get": {
                "operationId": "exportBatch",
                "summary": "A batch as CSV, one row per job",
                "description": (
                    "Columns: job_id, state, error_code, error_message, units, metadata "
                    "(JSON), results (our stored copies, or Kling's URLs while none)."
                ),
                "tags": ["batches"],
                "parameters": [batch_id_param],
                "responses": {
                    "200": {
                        "description": "The CSV.",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    "401": unauthorized,
                    "404": _error("No batch with this id for this key's producer."),
                    "503": intake_off,
                    "500": internal,
                },
            }
        },
        "/v1/counters": {
            "get": {
                "operationId": "getCounters",
                "summary": "This process's counters since it started",
                "tags": ["operations"],
                "responses": {
                    "200": _json(_ref("Counters"), "Counters of this copy of the service."),
                    "401": unauthorized,
                    "503": intake_off,
                    "500": internal,
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Prometheus metrics (text exposition format)",
                "description": (
                    "This process's counters (callbacks received by outcome...) and the "
                    "gauges read from the job store at scrape time (jobs by state, account "
                    "slots in use and their limit, account paused). Authenticated like "
                    "/v1: give Prometheus the key (`authorization: {credentials: KEY}`)."
                ),
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "The metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": unauthorized,
                    "503": intake_off,
                    "500": internal,
                },
            }
        },
        CALLBACK_PATH_PREFIX + "/{job_id}/{token}": {
            "post": {
                "operationId": "klingCallback",
                "summary": "Kling's task callback (the URL we give Kling as callback_url)",
                "description": (
                    "Authenticated by `token` (HMAC-SHA256 of the job id under "
                    "TRYON_CALLBACK_SECRET, or the previous secret; URL-safe Base64, no "
                    "padding), not by an API key. A valid callback is handed to the "
                    "workers as the task `tryon.callback`; a wrong token is answered "
                    "404 like an unknown URL. Without a configured secret every callback "
                    "is refused."
                ),
                "tags": ["kling"],
                "security": public,
                "parameters": [
                    job_id_param,
                    {
                        "name": "token",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("KlingTask")}},
                },
                "responses": {
                    "200": _json(_ref("CallbackReceived"), "Forwarded to the workers."),
                    "400": _error("Not a task object (or one of another job)."),
                    "404": _error("Unknown URL: wrong token, or callbacks are off."),
                    "413": _error("The body is larger than the callback cap."),
                    "503": _error("The broker is unavailable; polling remains the safety net."),
                    "500": internal,
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kolors-tryon",
            "version": _version(),
            "description": (
                "The HTTP door of kolors-tryon: queue virtual try-on jobs, read their "
                "records, receive Kling's callbacks. Every error is JSON: "
                '`{"error": {"code", "message", ...}}`.'
            ),
        },
        "servers": [{"url": settings.public_url.rstrip("/")}] if settings.public_url else [],
        "security": [{SECURITY_SCHEME: []}],
        "tags": [
            {"name": "jobs", "description": "Job intake and records (bearer key)."},
            {"name": "batches", "description": "A producer's batches (bearer key)."},
            {"name": "kling", "description": "Kling's callbacks (token in the URL)."},
            {"name": "operations", "description": "Health, readiness, this document."},
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A key of TRYON_API_KEYS: `Authorization: Bearer <key>`.",
                }
            },
        },
    }
