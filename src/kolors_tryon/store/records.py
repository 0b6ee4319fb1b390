"""The job record: what `tryon status`, `get_job()` and every event show of a job.

It never holds image data: results are URLs and paths of our stored copies.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, PrivateAttr

from kolors_tryon.config.producers import DEFAULT_PRODUCER, job_key
from kolors_tryon.store.states import JobState, is_terminal
from kolors_tryon.store.tables import JobRow


class ResultImage(BaseModel):
    """One generated image: Kling's URL (deleted after 30 days) and our copy of it."""

    model_config = ConfigDict(frozen=True)

    index: int
    url: str
    stored: str | None = Field(
        default=None,
        description="Our copy, once made: a file path, or s3://bucket/key. Null while the "
        "copy is pending (it is retried in the background) or when copies are off.",
    )
    sha256: str | None = Field(default=None, description="SHA-256 (hex) of the stored bytes.")


class JobError(BaseModel):
    """Why a job ended `failed`, `rejected` or `cancelled`."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str


class JobRecord(BaseModel):
    """A job as downstream systems see it."""

    model_config = ConfigDict(frozen=True)

    job_id: str = Field(description="The job's id as its producer knows it.")
    producer: str = Field(default=DEFAULT_PRODUCER, description="Whose job it is.")
    batch_id: str | None = Field(default=None, description="The producer's batch, if any.")
    state: JobState
    kling_task_id: str | None = None
    model_name: str | None = None
    images: list[ResultImage] = Field(default_factory=list)
    error: JobError | None = None
    attempts: int = 0
    final_unit_deduction: str | None = None
    priority: int = 0
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    conflicts: int = Field(
        default=0, description="Messages that came under this job id with other content."
    )
    resubmissions: int = Field(
        default=0, description="Times a rejected job was sent again under its id and retried."
    )
    note: str | None = Field(default=None, description="The latest conflict or resubmission.")
    created_at: str
    updated_at: str
    submitted_at: str | None = None
    finished_at: str | None = None
    overdue_at: str | None = Field(
        default=None,
        description="When the job was reported overdue (`job.overdue`): its Kling task "
        "outlived TRYON_TRACK_DEADLINE. A flag, not a state: the job is still followed and "
        "ends when Kling ends the task.",
    )
    deadline: str | None = Field(
        default=None,
        description="When the job is cancelled if it has not reached Kling by then.",
    )
    retry_of: str | None = Field(default=None, description="The job this one retries.")
    retried_by: list[str] = Field(
        default_factory=list,
        description="The jobs that retry this one, oldest first (in reads by job id).",
    )
    # Whether the job had a webhook target (a `callback_url`) when this record was read
    # from its row; None when unknown (a record parsed from an event). Not part of the
    # record users see: it lets the webhook planner skip a transaction for the jobs, most
    # of them, that have no target.
    _webhook_target: bool | None = PrivateAttr(default=None)
    # The pool account the job was claimed on (store/accounts.py); not part of the
    # record users see, so that the public record stays as it was.
    _account: str | None = PrivateAttr(default=None)

    @property
    def key(self) -> str:
        """The job's key in the store and at Kling (its `external_task_id`)."""
        return job_key(self.producer, self.job_id)

    @property
    def terminal(self) -> bool:
        return is_terminal(self.state)

    @property
    def may_have_webhooks(self) -> bool:
        """False only when the row said that the job has no webhook target."""
        return self._webhook_target is not False

    @property
    def account(self) -> str:
        """The account the job was claimed on (`default`: the single account)."""
        return self._account or "default"

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def iso(ts: float | None) -> str | None:
    """Unix seconds as an ISO 8601 UTC string (milliseconds)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unix_seconds(text: str | None) -> float | None:
    """The inverse of `iso`: an ISO 8601 UTC string as Unix seconds."""
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def record_from_row(row: JobRow) -> JobRecord:
    error = (
        JobError(code=row.error_code, message=row.error_message or "") if row.error_code else None
    )
    record = JobRecord(
        job_id=row.producer_job_id or row.job_id,
        producer=row.producer or DEFAULT_PRODUCER,
        batch_id=row.batch_id,
        state=JobState(row.state),
        kling_task_id=row.kling_task_id,
        model_name=row.model_name,
        images=[ResultImage.model_validate(img) for img in row.images or []],
        error=error,
        attempts=row.attempts,
        final_unit_deduction=row.final_unit_deduction,
        priority=row.priority,
        metadata=row.job_metadata or {},
        conflicts=row.conflicts or 0,
        resubmissions=row.resubmissions or 0,
        note=row.note,
        created_at=iso(row.created_at) or "",
        updated_at=iso(row.updated_at) or "",
        submitted_at=iso(row.submitted_at),
        finished_at=iso(row.finished_at),
        overdue_at=iso(row.overdue_at),
        deadline=iso(row.deadline_at),
        retry_of=row.retry_of,
    )
    record._webhook_target = bool(row.callback_url)
    record._account = getattr(row, "account", None)
    return record
