"""The JSON bodies of `tryon web`, as pydantic models: the routes build their answers from
them and `web.openapi` takes its schemas from them, so the document cannot drift from
what is sent.

A field that a body carries only sometimes (`limit_bytes`, a check's `error`) defaults
to None and is left out of the JSON unless it was given (`Body.json_body()` dumps with
``exclude_unset``), while a field given as None is sent as null (an invalid job's
`job_id`). Such optional fields are typed `X | SkipJsonSchema[None]`, so the schema says
what is sent when they are there rather than allowing null.

The job message (`jobs.job_json_schema()`) and the job record (`store.JobRecord`) have
their own models where they live; `KlingTask` documents what Kling sends us, which the
route itself reads with `kling.models.parse_task` (lenient, as Kling's answers need).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from kolors_tryon.store.records import JobRecord

__all__ = [
    "BODIES",
    "REQUEST_BODIES",
    "BatchCreated",
    "BatchItemAccepted",
    "BatchItemRefused",
    "BatchPage",
    "BatchResult",
    "Body",
    "CallbackReceived",
    "CancelResult",
    "Check",
    "Checks",
    "Counters",
    "Error",
    "ErrorDetail",
    "Health",
    "InvalidJob",
    "InvalidJobDetail",
    "JobAccepted",
    "JobList",
    "KlingTask",
    "NewBatch",
    "Problem",
    "Readiness",
    "RetryAccepted",
    "RetryRequest",
]


def _without_null_defaults(schema: dict[str, Any]) -> None:
    """An optional field left out says nothing about null: drop its `default: null`."""
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class Body(BaseModel):
    """A JSON body we send: closed (no other keys), optional fields sent only when given."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_without_null_defaults)

    def json_body(self) -> dict[str, Any]:
        """The body as JSON-ready data, in field order, optional fields only when given."""
        return self.model_dump(mode="json", exclude_unset=True)


# ------------------------------------------------------------------------ errors -------
class ErrorDetail(Body):
    """What went wrong, for a program (`code`) and for a person (`message`)."""

    code: str = Field(
        description="Stable code to branch on (not_found, unauthorized, body_too_large, "
        "intake_off, broker_unavailable, ...)."
    )
    message: str = Field(description="Redacted, human words.")
    limit_bytes: int | SkipJsonSchema[None] = Field(
        default=None, description="With body_too_large."
    )


class Error(Body):
    """Every error answer but an invalid job's: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


class Problem(Body):
    """One rule one field broke."""

    field: str = Field(
        description="The field's path (`human_image`, `garments[1]`), or `message` for "
        "the message as a whole."
    )
    rule: str = Field(description="Short, stable rule name.")
    message: str = Field(description="What is wrong, what works.")


class InvalidJobDetail(Body):
    """An invalid job: every problem found, each naming its field and rule."""

    code: Literal["invalid_job"]
    message: str = Field(description="All problems on one line.")
    job_id: str | None = Field(
        description="The job's id (its own or derived); null when the body is not a JSON object."
    )
    problems: list[Problem] = Field(min_length=1)


class InvalidJob(Body):
    """The 422 answer to an invalid job, or a batch invalid as a whole."""

    error: InvalidJobDetail


# ------------------------------------------------------------------------ intake -------
class BatchPage(Body):
    """A page of the producer's batches, newest first; `next` is the cursor of the next
    page (`?after=`), null on the last."""

    batches: list[dict[str, Any]] = Field(description="BatchRecord objects.")
    next: str | None


class JobAccepted(Body):
    """One job queued: its id (its own, or derived from its content)."""

    job_id: str


class BatchItemAccepted(Body):
    """An item of a batch that was queued."""

    index: int = Field(ge=0)
    status: Literal[202]
    job_id: str


class BatchItemRefused(Body):
    """An item of a batch that was not queued, and why."""

    index: int = Field(ge=0)
    status: Literal[422, 503]
    error: InvalidJobDetail | ErrorDetail = Field(
        description="InvalidJobDetail for 422, ErrorDetail for 503."
    )


class BatchResult(Body):
    """The answer to a batch: counts, and one result per item in the order sent."""

    accepted: int = Field(ge=0)
    refused: int = Field(ge=0)
    results: list[BatchItemAccepted | BatchItemRefused] = Field(
        description="One result per item, in the order sent."
    )


class NewBatch(BaseModel):
    """`POST /v1/batches`: a batch to open and its jobs (each a job message, validated
    alone; `batch_id` is written into each)."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Your id for the batch; without it `batch-<uuid>` is made.",
    )
    name: str | None = Field(default=None, max_length=200)
    jobs: list[dict[str, Any]] = Field(min_length=1, description="JobMessage objects.")


class BatchCreated(BatchResult):
    """The answer to `POST /v1/batches`: the batch's id and one result per job."""

    batch_id: str


# ------------------------------------------------------------------------ operations ---
class Health(Body):
    """Alive."""

    status: Literal["ok"]


class Check(Body):
    """One dependency's answer."""

    ok: bool
    error: str | SkipJsonSchema[None] = Field(
        default=None, description="Exception type or timeout."
    )


class Checks(Body):
    """The dependencies /readyz asks."""

    broker: Check
    store: Check


class Readiness(Body):
    """Ready when every check is ok."""

    status: Literal["ready", "unavailable"]
    checks: Checks


class Counters(Body):
    """This process's counters since it started."""

    counters: dict[str, int] = Field(
        description="jobs_accepted, jobs_refused, auth_refused, callbacks_forwarded, "
        "callbacks_bad_token, callbacks_bad_body."
    )


# ------------------------------------------------------------------------ callbacks ----
class CallbackReceived(Body):
    """Kling's callback was handed to the workers."""

    received: Literal[True]


class CancelResult(Body):
    """What a cancel did: 200 `cancelled` (no create was ever sent, none ever will be);
    409 `at_kling` (a create may have reached Kling, which has no cancel: the job runs to
    its end and is charged) or `ended` (the job had already ended)."""

    job_id: str
    outcome: Literal["cancelled", "at_kling", "ended"]
    state: str = Field(description="The job's state after the request.")
    charged: bool = Field(
        description="Whether the job may spend a credit (true only for `at_kling`)."
    )
    message: str = Field(description="Human words on what happened and what follows.")


class JobList(Body):
    """One page of `GET /v1/jobs`, newest first, and the cursor of the next page."""

    jobs: list[JobRecord]
    next_cursor: str | None = Field(
        description="Give it as `cursor` for the next page; null on the last page."
    )


class RetryAccepted(Body):
    """A retry queued: the new job's id, linked to the old one (`retry_of`)."""

    job_id: str
    retry_of: str
    estimate: str = Field(description="What the retry may spend (one try-on: one unit).")


class RetryRequest(BaseModel):
    """Other photos for a retry (optional: without them the job's own are sent again,
    while the store keeps them: a job that reached Kling lost them at submission)."""

    model_config = ConfigDict(extra="forbid")

    human_image: Annotated[str, Field(min_length=1)] | SkipJsonSchema[None] = Field(
        default=None, description="Another photo of the person (URL or Base64)."
    )
    cloth_image: Annotated[str, Field(min_length=1)] | SkipJsonSchema[None] = Field(
        default=None, description="Another garment photo (URL or Base64)."
    )

    @field_validator("human_image", "cloth_image", mode="before")
    @classmethod
    def _no_null(cls, value: Any) -> Any:
        """Leave a photo out to keep the job's own; null is not a photo."""
        if value is None:
            raise ValueError("must be a string; leave the field out to keep the job's photo")
        return value


class _OpenBody(BaseModel):
    """A body Kling sends: open, as Kling's objects are (a field it adds tomorrow must
    not be refused today), every field optional."""

    model_config = ConfigDict(json_schema_extra=_without_null_defaults)


class KlingTaskInfo(_OpenBody):
    external_task_id: str | SkipJsonSchema[None] = None


class KlingTaskImage(_OpenBody):
    index: int | SkipJsonSchema[None] = None
    url: str | SkipJsonSchema[None] = None


class KlingTaskResult(_OpenBody):
    images: list[KlingTaskImage] | None = None


class KlingTask(_OpenBody):
    """The bare task object Kling POSTs on each status change (KLING_API.md, Callbacks);
    a reseller's {code, data} envelope is accepted."""

    task_id: str | int | SkipJsonSchema[None] = None
    task_status: Literal["submitted", "processing", "succeed", "failed"] | SkipJsonSchema[None] = (
        None
    )
    task_status_msg: str | SkipJsonSchema[None] = None
    task_info: KlingTaskInfo | SkipJsonSchema[None] = None
    task_result: KlingTaskResult | None = None
    final_unit_deduction: str | float | SkipJsonSchema[None] = None
    created_at: int | SkipJsonSchema[None] = None
    updated_at: int | SkipJsonSchema[None] = None


# Every body the app sends, and every one it reads with a model, by schema name.
BODIES: tuple[type[BaseModel], ...] = (
    Error,
    InvalidJob,
    JobAccepted,
    BatchResult,
    BatchPage,
    BatchCreated,
    Health,
    Readiness,
    Counters,
    CallbackReceived,
    CancelResult,
    RetryAccepted,
    JobList,
)
REQUEST_BODIES: tuple[type[BaseModel], ...] = (KlingTask, RetryRequest, NewBatch)
