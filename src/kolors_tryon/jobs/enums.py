"""The closed vocabularies of a job: Kling's model names and the garments a cloth image shows.

They live apart from the models so that the garment rule (`garments.py`) and the message
model (`models.py`) can both use them without importing each other.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DEFAULT_WEBHOOK_EVENTS", "Garment", "ModelName", "WebhookEvent"]


class ModelName(StrEnum):
    """A Kolors virtual try-on model, exactly as the API spells it."""

    V1 = "kolors-virtual-try-on-v1"
    V1_5 = "kolors-virtual-try-on-v1-5"


class Garment(StrEnum):
    """One item of clothing the cloth image shows (a one-piece dress counts as one)."""

    TOP = "top"
    BOTTOM = "bottom"
    DRESS = "dress"


class WebhookEvent(StrEnum):
    """What a producer may ask a webhook for (`webhook_events`): the job states,
    `overdue` (the job's task outlived the tracking deadline; it is still followed), and
    `reviewed` (a person approved or rejected the result in the review console; opt-in)."""

    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    OVERDUE = "overdue"
    REVIEWED = "reviewed"


# Without `webhook_events`, a producer hears of a job's end only, and of a job that is
# late (`overdue`, where a deadline used to fail it): what most of them need.
DEFAULT_WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = (
    WebhookEvent.SUCCEEDED,
    WebhookEvent.FAILED,
    WebhookEvent.REJECTED,
    WebhookEvent.CANCELLED,
    WebhookEvent.OVERDUE,
)
