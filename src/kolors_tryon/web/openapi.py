"""The OpenAPI 3.1 document of `tryon web`, served at `/openapi.json`.

Written out by hand, because the job intake does not parse its body with a model: it
hands the raw bytes to `validate_job`, exactly as the worker does. The schemas that
matter come from the code, so they cannot drift: the job message from
`job_json_schema()` and the record from `JobRecord`. Their `$defs` are hoisted into
`components/schemas` so that every `$ref` resolves from the document's root.
"""

from __future__ import annotations

import copy
from importlib import metadata
from typing import Any, Final

from kolors_tryon.config import Settings
from kolors_tryon.jobs import job_json_schema
from kolors_tryon.pipeline.callback_tokens import CALLBACK_PATH_PREFIX
from kolors_tryon.store import JobRecord

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
    schemas: dict[str, Any] = {}
    _hoist("JobMessage", job_json_schema(), schemas)
    _hoist(
        "JobRecord",
        JobRecord.model_json_schema(mode="serialization", ref_template=_REF + "{model}"),
        schemas,
    )
    string = {"type": "string"}
    schemas.update(
        {
            "JobBatch": {
                "description": "Several job messages in one request, each validated alone.",
                "type": "array",
                "items": _ref("JobMessage"),
                "minItems": 1,
                "maxItems": settings.web_max_batch_jobs,
            },
            "ErrorDetail": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "Stable code to branch on (not_found, unauthorized, "
                        "body_too_large, intake_off, broker_unavailable, ...).",
                    },
                    "message": {"type": "string", "description": "Redacted, human words."},
                    "limit_bytes": {"type": "integer", "description": "With body_too_large."},
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": _ref("ErrorDetail")},
                "additionalProperties": False,
            },
            "Problem": {
                "type": "object",
                "required": ["field", "rule", "message"],
                "properties": {
                    "field": {
                        "type": "string",
                        "description": "The field's path (`human_image`, `garments[1]`), or "
                        "`message` for the message as a whole.",
                    },
                    "rule": {"type": "string", "description": "Short, stable rule name."},
                    "message": {"type": "string", "description": "What is wrong, what works."},
                },
                "additionalProperties": False,
            },
            "InvalidJobDetail": {
                "type": "object",
                "required": ["code", "message", "job_id", "problems"],
                "properties": {
                    "code": {"const": "invalid_job"},
                    "message": {"type": "string", "description": "All problems on one line."},
                    "job_id": {
                        "type": ["string", "null"],
                        "description": "The job's id (its own or derived); null when the "
                        "body is not a JSON object.",
                    },
                    "problems": {"type": "array", "items": _ref("Problem"), "minItems": 1},
                },
                "additionalProperties": False,
            },
            "InvalidJob": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": _ref("InvalidJobDetail")},
                "additionalProperties": False,
            },
            "JobAccepted": {
                "type": "object",
                "required": ["job_id"],
                "properties": {"job_id": string},
                "additionalProperties": False,
            },
            "BatchItemAccepted": {
                "type": "object",
                "required": ["index", "status", "job_id"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "status": {"const": 202},
                    "job_id": string,
                },
                "additionalProperties": False,
            },
            "BatchItemRefused": {
                "type": "object",
                "required": ["index", "status", "error"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "status": {"enum": [422, 503]},
                    "error": {
                        "description": "InvalidJobDetail for 422, ErrorDetail for 503.",
                        "anyOf": [_ref("InvalidJobDetail"), _ref("ErrorDetail")],
                    },
                },
                "additionalProperties": False,
            },
            "BatchResult": {
                "type": "object",
                "required": ["accepted", "refused", "results"],
                "properties": {
                    "accepted": {"type": "integer", "minimum": 0},
                    "refused": {"type": "integer", "minimum": 0},
                    "results": {
                        "type": "array",
                        "description": "One result per item, in the order sent.",
                        "items": {"oneOf": [_ref("BatchItemAccepted"), _ref("BatchItemRefused")]},
                    },
                },
                "additionalProperties": False,
            },
            "Health": {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"const": "ok"}},
                "additionalProperties": False,
            },
            "Check": {
                "type": "object",
                "required": ["ok"],
                "properties": {
                    "ok": {"type": "boolean"},
                    "error": {"type": "string", "description": "Exception type or timeout."},
                },
                "additionalProperties": False,
            },
            "Readiness": {
                "type": "object",
                "required": ["status", "checks"],
                "properties": {
                    "status": {"enum": ["ready", "unavailable"]},
                    "checks": {
                        "type": "object",
                        "required": ["broker", "store"],
                        "properties": {"broker": _ref("Check"), "store": _ref("Check")},
                        "additionalProperties": False,
                    },
                },
                "additionalProperties": False,
            },
            "KlingTask": {
                "description": "The bare task object Kling POSTs on each status change "
                "(KLING_API.md, Callbacks); a reseller's {code, data} envelope is accepted.",
                "type": "object",
                "properties": {
                    "task_id": {"type": ["string", "integer"]},
                    "task_status": {"enum": ["submitted", "processing", "succeed", "failed"]},
                    "task_status_msg": string,
                    "task_info": {
                        "type": "object",
                        "properties": {"external_task_id": string},
                    },
                    "task_result": {
                        "type": ["object", "null"],
                        "properties": {
                            "images": {
                                "type": ["array", "null"],
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "index": {"type": "integer"},
                                        "url": string,
                                    },
                                },
                            }
                        },
                    },
                    "final_unit_deduction": {"type": ["string", "number"]},
                    "created_at": {"type": "integer"},
                    "updated_at": {"type": "integer"},
                },
            },
            "CallbackReceived": {
                "type": "object",
                "required": ["received"],
                "properties": {"received": {"const": True}},
                "additionalProperties": False,
            },
            "Counters": {
                "type": "object",
                "required": ["counters"],
                "properties": {
                    "counters": {
                        "type": "object",
                        "description": "jobs_accepted, jobs_refused, auth_refused, "
                        "callbacks_forwarded, callbacks_bad_token, callbacks_bad_body.",
                        "additionalProperties": {"type": "integer"},
                    }
                },
                "additionalProperties": False,
            },
        }
    )
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
            }
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
