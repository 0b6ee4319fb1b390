"""The HTTP door's one error table, and the OpenAPI schemas taken from the body models."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode
from starlette.exceptions import HTTPException

from kolors_tryon.config import Settings, defaults
from kolors_tryon.errors import JobNotFound, TryonError
from kolors_tryon.jobs import JobRejected, Problem
from kolors_tryon.web.bodies import BODIES, REQUEST_BODIES
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
)
from kolors_tryon.web.openapi import openapi_document
from kolors_tryon.web.slots import SlotsFull

DOCUMENT = openapi_document(Settings(web_max_batch_jobs=5))

# One example of each error the door raises: (exception, status, code, message).
CASES: list[tuple[BaseException, int, str, str]] = [
    (JobNotFound("sku-1"), 404, "not_found", "no job with this id"),
    (IntakeOff(), 503, "intake_off", "HTTP intake is off: set TRYON_API_KEYS"),
    (
        KeyRefused(),
        401,
        "unauthorized",
        "a valid API key is required in the Authorization header (Bearer scheme)",
    ),
    (NotJson(), 415, "unsupported_media_type", "send the job as application/json"),
    (BodyTooLarge(10), 413, "body_too_large", "the request body is larger than 10 bytes"),
    (
        SlotsFull("tryon-preflight", 4),
        503,
        "preflight_busy",
        f"every URL preflight slot is busy (4); try again in {defaults.WEB_BUSY_RETRY_AFTER} s",
    ),
    (
        BrokerUnavailable(),
        503,
        "broker_unavailable",
        "the job could not be queued: the broker is unavailable",
    ),
    (BrokerUnavailable("try again later"), 503, "broker_unavailable", "try again later"),
    (StoreUnavailable(), 503, "store_unavailable", "the job store is unavailable"),
    (CallbackRefused("not a task"), 400, "invalid_callback", "not a task"),
    (UnknownCallbackUrl(), 404, "not_found", "Not Found"),
    (HTTPException(405), 405, "method_not_allowed", "Method Not Allowed"),
    (RuntimeError("secret detail"), 500, "internal", "internal error; it has been logged"),
    (TryonError("not listed"), 500, "internal", "internal error; it has been logged"),
]


def _validates(instance: Any, name: str) -> None:
    root = {"components": DOCUMENT["components"], "$ref": f"#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(root).validate(instance)


@pytest.mark.parametrize(("exc", "status", "code", "message"), CASES)
def test_each_error_is_answered_from_the_table(
    exc: BaseException, status: int, code: str, message: str
) -> None:
    """Status, code and message come from the table; the body is the documented Error."""
    answer = error_answer(exc)
    body = answer.body.json_body()
    assert (answer.status, body["error"]["code"], body["error"]["message"]) == (
        status,
        code,
        message,
    )
    _validates(body, "Error")


def test_a_missing_job_is_a_404_and_a_lookup_error() -> None:
    """JobNotFound, the store's typed "no such job", is the door's 404 not_found."""
    answer = error_answer(JobNotFound("sku-1"))
    assert answer.status == 404
    assert isinstance(JobNotFound("sku-1"), LookupError)


def test_an_invalid_job_names_its_problems_and_redacts_them() -> None:
    """JobRejected answers 422 InvalidJob with every problem, secrets redacted."""
    key = "sk-" + "a1" * 20
    rejection = JobRejected(None, [Problem("message", "json", f"is not JSON near {key}")])
    answer = error_answer(rejection)
    body = answer.body.json_body()
    assert answer.status == 422
    assert body["error"]["job_id"] is None
    assert [p["rule"] for p in body["error"]["problems"]] == ["json"]
    assert key not in str(body)
    _validates(body, "InvalidJob")


def test_too_large_carries_its_limit_and_retry_later_errors_their_header() -> None:
    """limit_bytes rides with body_too_large; busy and broker-down answers say Retry-After."""
    assert error_answer(BodyTooLarge(10)).body.json_body()["error"]["limit_bytes"] == 10
    for exc in (SlotsFull("x", 1), BrokerUnavailable()):
        assert "Retry-After" in (error_answer(exc).headers or {})
    assert error_answer(KeyRefused()).headers == {"WWW-Authenticate": 'Bearer realm="tryon"'}


def test_the_table_ends_with_the_catch_all() -> None:
    """Every exception finds a row: the last one, Exception, answers 500."""
    assert list(ERRORS)[-1] is Exception


def test_every_schema_comes_from_a_model() -> None:
    """components/schemas holds the models' schemas (and their $defs), and nothing written by
    hand but the job message's (from jobs/) and the batch around it (its cap is a setting)."""
    schemas = DOCUMENT["components"]["schemas"]
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "serialization") for model in BODIES),
        *((model, "validation") for model in REQUEST_BODIES),
    ]
    for model, mode in modes:
        schema = model.model_json_schema(mode=mode, ref_template="#/components/schemas/{model}")
        defs = schema.pop("$defs", {})
        assert schemas[model.__name__] == schema
        assert all(schemas[name] == definition for name, definition in defs.items())
    assert {"JobMessage", "JobBatch", "JobRecord"} <= set(schemas)
