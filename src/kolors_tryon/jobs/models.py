"""The job message producers publish, and the create body we send to Kling.

`JobMessage` is the public contract (DESIGN.md, "The job message"): the same JSON comes
from Python, the CLI or any AMQP client, and `tryon schema` prints its JSON Schema, so
the field descriptions below are the documentation producers read. The model checks the
shape of each field; `validation.validate_job` adds the checks that need the image bytes.

Image fields and the callback URL are left out of ``repr()`` and validation errors hide
their input, because they hold people's photos and secrets (invariant 6).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from kolors_tryon.jobs.enums import DEFAULT_WEBHOOK_EVENTS, Garment, ModelName, WebhookEvent
from kolors_tryon.jobs.errors import CheckFailed
from kolors_tryon.jobs.garments import garment_problem
from kolors_tryon.jobs.images import normalize_base64
from kolors_tryon.jobs.urls import check_http_url, scheme_of

__all__ = [
    "JOB_ID_MAX_LENGTH",
    "JOB_ID_PATTERN",
    "MAX_CALLBACK_URL_LENGTH",
    "MAX_DEADLINE_SECONDS",
    "MAX_IMAGE_URL_LENGTH",
    "MAX_METADATA_BYTES",
    "MAX_PRIORITY",
    "CreateTaskBody",
    "Garment",
    "JobMessage",
    "ModelName",
    "metadata_size",
    "normalize_image_field",
    "parse_instant",
]

JOB_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]+$"
JOB_ID_MAX_LENGTH: Final = 64
MAX_CALLBACK_URL_LENGTH: Final = 2048
# Signed image URLs (S3, GCS, CDNs) run to a few thousand characters; the API states no
# limit, so be liberal but bounded.
MAX_IMAGE_URL_LENGTH: Final = 8192
MAX_METADATA_BYTES: Final = 16 * 1024
MAX_PRIORITY: Final = 9
# The longest relative deadline (seconds after acceptance): 30 days, Kling's own horizon.
MAX_DEADLINE_SECONDS: Final = 30 * 24 * 3600.0

# What the schema can say of an image field: something besides whitespace (the field is
# stripped, with Python's idea of whitespace: the file separators \x1c-\x1f and NEL too).
_IMAGE_SCHEMA: Final[dict[str, Any]] = {"minLength": 1, "pattern": "[^\\s\\x1c-\\x1f\\x85]"}

_IMAGE_HELP = (
    "An http(s) URL Kling can fetch, or the image file as Base64 (a `data:image/...;base64,` "
    "prefix is accepted and stripped; line breaks are ignored). JPEG or PNG, at most 10 MB, "
    "width and height at least 300 px."
)


def _custom(rule: str, message: str) -> PydanticCustomError:
    # The message goes through the context so that braces in it are never read as a
    # template; `validation` reads `ctx["reason"]` back.
    return PydanticCustomError(rule, "{reason}", {"reason": message})


def normalize_image_field(value: str) -> str:
    """Check the form of an image field and return it as Kling wants it.

    Args:
        value: `human_image` or `cloth_image` as the producer sent it.

    Returns:
        The URL stripped of surrounding whitespace, or the bare Base64 (data: prefix and
        whitespace removed). The Base64 itself is checked later, by `images`.

    Raises:
        CheckFailed: rule ``"empty"``, ``"format"`` (a data: URI that is not Base64), or a
            URL rule (``"url"``, ``"url_scheme"``, ``"max_length"``).
    """
    text = value.strip()
    if not text:
        raise CheckFailed("empty", f"is empty; {_IMAGE_HELP}")
    scheme = scheme_of(text)
    if scheme is None or scheme == "data":
        text = normalize_base64(text)
        if not text:
            raise CheckFailed("empty", "data: URI holds no data; give the image as Base64")
        return text
    try:
        check_http_url(text, max_length=MAX_IMAGE_URL_LENGTH)
    except CheckFailed as exc:
        if exc.rule == "url_scheme":
            raise CheckFailed(exc.rule, exc.message + ", or send the image as Base64") from None
        raise
    return text


def metadata_size(metadata: Any) -> int:
    """Return the size in bytes of `metadata` as compact UTF-8 JSON (what the limit counts).

    Raises:
        ValueError: `metadata` holds NaN or infinity, which JSON cannot carry.
        TypeError: `metadata` holds a value JSON cannot carry.
    """
    text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(text.encode("utf-8", "surrogatepass"))


# What a job id is, wherever a message names one (its own, or the job it retries).
_JOB_ID_RULES: Final[dict[str, Any]] = {
    "min_length": 1,
    "max_length": JOB_ID_MAX_LENGTH,
    "pattern": JOB_ID_PATTERN,
    "strict": True,
}

# RFC 3339's date-time (what JSON Schema's `date-time` format names): any number of
# fractional digits, `t`/`z` in either case, a leap second.
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 / RFC 3339 instant with its offset (a leap second is read as :59)."""
    match = _RFC3339.match(text.strip())
    if match is None:
        return datetime.fromisoformat(text.strip())  # other ISO 8601 forms Python reads
    day, hour, minute, second, fraction, offset = match.groups()
    second = min(int(second), 59)
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if offset in ("Z", "z") else offset
    return datetime.fromisoformat(f"{day}T{hour}:{minute}:{second:02d}.{micro}{zone}")


class JobMessage(BaseModel):
    """One virtual try-on job: put one person in one garment photo.

    Publish it as JSON to the durable queue `tryon.jobs` (content type
    `application/json`), or pass it to `enqueue()` / `tryon submit`. Unknown fields are
    refused by name, so a misspelt field (such as `model` for `model_name`) is an error
    rather than a silently ignored default.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        title="JobMessage",
    )

    job_id: Annotated[
        str | None,
        Field(
            default=None,
            **_JOB_ID_RULES,
            description=(
                "Your id for this job: 1-64 characters of letters, digits, '.', '_', ':' "
                "and '-'. It is sent to Kling as `external_task_id` (scoped by producer for "
                "producers other than `default`) and is the key to read the job's state. "
                "Publishing two messages with the same id is one job. "
                "Optional: without it the id is derived from the message content "
                "(`job-` + 32 hex characters), so publishing the same message twice is "
                "still one job."
            ),
            examples=["sku-1234-model-7"],
        ),
    ]
    batch_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=JOB_ID_MAX_LENGTH,
            pattern=JOB_ID_PATTERN,
            strict=True,
            description=(
                "Your batch for this job (same rules as `job_id`): the batch is created by "
                "the first job that names it, and followed as one (`GET /v1/batches/{id}`, "
                "`batch.completed`). Optional."
            ),
            examples=["catalogue-2026-12"],
        ),
    ] = None
    model_name: ModelName = Field(
        default=ModelName.V1,
        description=(
            "The Kling model. `kolors-virtual-try-on-v1` (default) takes one garment; "
            "`kolors-virtual-try-on-v1-5` also takes a top and a bottom merged into one "
            "image. Note the field is `model_name`, not `model`."
        ),
    )
    human_image: str = Field(
        strict=True,
        repr=False,
        description=f"The photo of the person. {_IMAGE_HELP}",
        examples=["https://example.com/people/anna.jpg"],
        json_schema_extra=_IMAGE_SCHEMA,
    )
    cloth_image: str = Field(
        strict=True,
        repr=False,
        description=(
            "The product photo, or the garment on a white background (for top+bottom on "
            f"v1-5: both merged into one image). {_IMAGE_HELP}"
        ),
        examples=["https://example.com/catalogue/sku-1234.png"],
        json_schema_extra=_IMAGE_SCHEMA,
    )
    callback_url: str | None = Field(
        default=None,
        strict=True,
        repr=False,
        max_length=MAX_CALLBACK_URL_LENGTH,
        description=(
            "Optional http(s) URL (at most 2048 characters) where the service POSTs the job "
            "record, signed as Standard Webhooks (`webhook-id`, `webhook-timestamp`, "
            "`webhook-signature`), on each state of `webhook_events`. It is never sent to "
            "Kling. Private, loopback and link-local hosts are refused unless the service "
            "allows them. The job's state is always readable by `job_id` without it."
        ),
        json_schema_extra={"format": "uri"},
        examples=["https://hooks.example.com/tryon?token=your-secret"],
    )
    webhook_events: list[WebhookEvent] | None = Field(
        default=None,
        description=(
            "The job states that send a webhook to `callback_url`, e.g. "
            '`["submitted", "succeeded", "failed", "rejected"]`, and `overdue` (the task '
            "outlived the tracking deadline; the job is still followed). Default: the "
            f"terminal ones and overdue, {', '.join(e.value for e in DEFAULT_WEBHOOK_EVENTS)}."
        ),
        # No uniqueItems: a state listed twice is taken once, not refused.
        json_schema_extra={"minItems": 1},
    )
    metadata: dict[str, JsonValue] = Field(
        default_factory=dict,
        description=(
            "Your own data, returned unchanged in the job record and every event (e.g. "
            '`{"sku": "1234"}`). A JSON object of at most 16 KB as compact UTF-8 JSON; '
            "never sent to Kling."
        ),
    )
    garments: list[Garment] | None = Field(
        default=None,
        description=(
            "Optional: what the cloth image shows, so that combinations the API refuses are "
            'caught before a credit is spent. One item (`["top"]`, `["bottom"]` or '
            '`["dress"]`), or `["top", "bottom"]` on kolors-virtual-try-on-v1-5 only. '
            "Never sent to Kling."
        ),
        # Documented for producers; enforced by `_check_garments` with clearer messages.
        json_schema_extra={"minItems": 1, "maxItems": 2},
    )
    priority: int = Field(
        default=0,
        ge=0,
        le=MAX_PRIORITY,
        strict=True,
        description="Queue priority from 0 to 9; higher runs first. Default 0.",
    )
    account: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
        description="Run on this account of the pool only (TRYON_KLING_ACCOUNTS); the job "
        "waits while it is full or paused. Default: any account that runs its model.",
    )

    retry_of: str | None = Field(
        default=None,
        **_JOB_ID_RULES,
        description=(
            "Optional: the job this one retries (set by `tryon retry` and "
            "`POST /v1/jobs/{job_id}/retry`); that job's record then lists this one in "
            "`retried_by`."
        ),
    )
    deadline: float | str | None = Field(
        default=None,
        description=(
            "Optional: when the job is no longer wanted if it has not reached Kling. An "
            "ISO 8601 instant with its offset (`2026-12-08T18:00:00Z`), or seconds after "
            "the service accepts the job (`3600`). A job still waiting then is `cancelled` "
            "with the reason `deadline_passed`, and no create is ever sent after it (a job "
            "already at Kling runs to its end)."
        ),
        examples=["2026-12-08T18:00:00Z", 3600],
        json_schema_extra={
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DEADLINE_SECONDS},
                {"type": "string", "format": "date-time"},
                {"type": "null"},
            ]
        },
    )

    @field_validator("deadline", mode="before")
    @classmethod
    def _check_deadline(cls, value: Any) -> Any:
        """Seconds (a positive number, at most 30 days) or an instant with its offset,
        kept as a normalized ISO 8601 UTC string."""
        if value is None:
            return None
        if isinstance(value, bool):
            raise _custom("type", "must be an ISO 8601 instant or a number of seconds")
        if isinstance(value, int | float):
            if not 0 < value <= MAX_DEADLINE_SECONDS:
                raise _custom(
                    "range",
                    f"must be more than 0 and at most {MAX_DEADLINE_SECONDS:.0f} seconds",
                )
            return float(value)
        if isinstance(value, str):
            try:
                instant = parse_instant(value)
            except ValueError:
                raise _custom("format", "is not an ISO 8601 instant") from None
            if instant.tzinfo is None:
                raise _custom("format", "needs its offset (e.g. Z or +02:00)")
            return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
        raise _custom("type", "must be an ISO 8601 instant or a number of seconds")

    def deadline_parts(self) -> tuple[float | None, float | None]:
        """The deadline as (instant in Unix seconds, None) or (None, seconds after
        acceptance); (None, None) without one."""
        if self.deadline is None:
            return None, None
        if isinstance(self.deadline, float):
            return None, self.deadline
        return datetime.fromisoformat(self.deadline).timestamp(), None

    @field_validator("priority", mode="before")
    @classmethod
    def _integral_number(cls, value: Any) -> Any:
        """`1.0` is the integer 1 in JSON (and in JSON Schema): JavaScript and many JSON
        libraries write whole numbers so, and the schema promises `integer`. `1.5` and
        booleans stay refused (strict)."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @field_validator("human_image", "cloth_image")
    @classmethod
    def _check_image(cls, value: str) -> str:
        """Accept an http(s) URL or Base64, and store Base64 bare, as Kling wants it."""
        try:
            return normalize_image_field(value)
        except CheckFailed as exc:
            raise _custom(exc.rule, exc.message) from None

    @field_validator("callback_url")
    @classmethod
    def _check_callback_url(cls, value: str | None) -> str | None:
        """Kling can only POST to an absolute http(s) URL."""
        if value is None:
            return None
        text = value.strip()
        try:
            check_http_url(text, max_length=MAX_CALLBACK_URL_LENGTH)
        except CheckFailed as exc:
            raise _custom(exc.rule, exc.message) from None
        return text

    @field_validator("webhook_events")
    @classmethod
    def _check_webhook_events(cls, value: list[WebhookEvent] | None) -> list[WebhookEvent] | None:
        """An empty list would ask for nothing: say so rather than send nothing silently."""
        if value is None:
            return None
        if not value:
            raise _custom("min_items", "is empty; list at least one state, or leave it out")
        return list(dict.fromkeys(value))

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        """Metadata travels in every event and record, so it must stay small."""
        try:
            size = metadata_size(value)
        except (TypeError, ValueError):
            raise _custom(
                "type", "must be a JSON object; NaN, infinity and non-JSON values are refused"
            ) from None
        if size > MAX_METADATA_BYTES:
            raise _custom(
                "max_bytes",
                f"is {size} bytes as compact JSON; at most {MAX_METADATA_BYTES} bytes (16 KB) "
                "are accepted (keep ids and references here, not content)",
            )
        return value

    @field_validator("garments")
    @classmethod
    def _check_garments(
        cls, value: list[Garment] | None, info: ValidationInfo
    ) -> list[Garment] | None:
        """Refuse garment combinations the chosen model cannot try on."""
        if value is None:
            return None
        # model_name is declared first, so it is in `info.data` whenever it was valid.
        model = info.data.get("model_name")
        problem = garment_problem(model if isinstance(model, ModelName) else None, value)
        if problem is not None:
            raise _custom("garments", problem)
        return value


class CreateTaskBody(BaseModel):
    """The JSON body of Kling's create call, field for field (KLING_API.md, "Create").

    Built only from a validated job, with `external_task_id` set to the job id so that an
    ambiguous create can be resolved by querying that id (invariant 2).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    model_name: ModelName = ModelName.V1
    human_image: str = Field(repr=False)
    cloth_image: str = Field(repr=False)
    callback_url: str | None = Field(default=None, repr=False)
    external_task_id: str | None = None

    def to_request(self) -> dict[str, str]:
        """Return the body as sent on the wire: plain strings, unset optional fields left out."""
        dumped = self.model_dump(mode="json", exclude_none=True)
        return {key: str(value) for key, value in dumped.items()}
