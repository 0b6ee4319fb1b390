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
    """A job state a producer may ask a webhook for (`webhook_events`): the job states."""

    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


# Without `webhook_events`, a producer hears of a job's end only: what most of them need.
DEFAULT_WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = (
    WebhookEvent.SUCCEEDED,
    WebhookEvent.FAILED,
    WebhookEvent.REJECTED,
)
