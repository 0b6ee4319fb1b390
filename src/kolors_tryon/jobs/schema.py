"""The JSON Schema of the job message, as `tryon schema` prints it for producers.

It is generated from `JobMessage`, so the schema and the validation can never disagree;
this module only adds the document's identity and a description of what the schema
cannot express (the image checks made on the bytes).
"""

from __future__ import annotations

from typing import Any, Final

from kolors_tryon.jobs.models import JobMessage

__all__ = ["SCHEMA_ID", "job_json_schema"]

SCHEMA_ID: Final = "urn:kolors-tryon:schema:job-message:v1"
_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def job_json_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of the job message.

    Returns:
        A fresh dict, safe for the caller to modify.
    """
    schema = JobMessage.model_json_schema(mode="validation")
    described = {
        "$schema": _DIALECT,
        "$id": SCHEMA_ID,
        "title": "Kolors try-on job message",
        "description": (
            "One virtual try-on job, published as JSON to the durable queue `tryon.jobs` "
            "(content type application/json). Beyond this schema, the worker checks each "
            "image by its bytes: JPEG or PNG, at most 10 MB, width and height at least "
            "300 px, complete and not corrupt. An invalid job is recorded as `rejected` with "
            "a reason naming the field and the rule, and costs no API call."
        ),
    }
    return {**described, **{k: v for k, v in schema.items() if k not in described}}
