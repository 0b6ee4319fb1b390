"""Schemathesis hooks of `test_openapi_fuzz.py`: what "schema-valid but refused" may mean.

`POST /v1/jobs` checks more than a JSON Schema can say: an image is judged by its bytes
(Base64 that decodes to a JPEG or PNG of the right size) or by its URL's form, metadata
by its compact size and depth, garments by the model they go with, a webhook target by
the address its host resolves to. So a schema-valid body may be answered 422, and the
run tolerates 422 there (schemathesis.toml beside this file); this check then makes that
tolerance exact: every problem of such a 422 must be one of those rules. Anything else
(an empty image string, a rule the schema could have stated) fails the run, as
`positive_data_acceptance` would.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response

# (field, or the top-level field of a nested path) -> rules no JSON Schema can express.
BEYOND_THE_SCHEMA: dict[str, frozenset[str]] = {
    "human_image": frozenset(
        {"base64", "format", "max_bytes", "min_size", "max_pixels", "corrupt", "truncated"}
        | {"url", "url_scheme", "max_length"}
    ),
    "callback_url": frozenset({"url", "url_scheme", "private_address"}),
    "metadata": frozenset({"max_bytes", "max_depth", "encoding"}),
    "garments": frozenset({"garments"}),
}
BEYOND_THE_SCHEMA["cloth_image"] = BEYOND_THE_SCHEMA["human_image"]


def _problems(body: Any) -> list[dict[str, Any]]:
    """The problems of a 422 body: an InvalidJob, or a BatchResult's refused items."""
    if not isinstance(body, dict):
        return []
    if "error" in body:
        return list(body["error"].get("problems") or [])
    found: list[dict[str, Any]] = []
    for result in body.get("results") or []:
        found += (result.get("error") or {}).get("problems") or []
    return found


@schemathesis.check
def refused_only_beyond_the_schema(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """A schema-valid job is queued, or refused only for a rule the schema cannot state."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if case.operation.method.upper() != "POST" or case.operation.path != "/v1/jobs":
        return None
    if response.status_code not in (207, 422):
        return None
    stated = [
        f"{problem.get('field')}: {problem.get('rule')}"
        for problem in _problems(response.json())
        if problem.get("rule")
        not in BEYOND_THE_SCHEMA.get(str(problem.get("field", "")).split(".")[0].split("[")[0], ())
    ]
    if stated:
        raise AssertionError(
            "Schema-valid job refused for what the schema could have said: " + "; ".join(stated)
        )
    return None
