"""Job contract and validation: what a try-on job is, and whether one may cost a credit.

Pure: no Celery, no database, no network except the optional URL preflight. The worker
calls `validate_job` on every message it takes from the queue; producers can call it
(or `tryon validate`) before publishing.
"""

from kolors_tryon.jobs.enums import Garment, ModelName
from kolors_tryon.jobs.errors import CheckFailed
from kolors_tryon.jobs.garments import garment_problem
from kolors_tryon.jobs.ids import derive_job_id, is_valid_job_id, job_id_of
from kolors_tryon.jobs.images import (
    MAX_IMAGE_BYTES,
    MIN_SIDE,
    ImageInfo,
    ImageProblem,
    inspect_image,
    inspect_image_bytes,
)
from kolors_tryon.jobs.models import CreateTaskBody, JobMessage
from kolors_tryon.jobs.preflight import classify_address, preflight_image_url
from kolors_tryon.jobs.schema import job_json_schema
from kolors_tryon.jobs.urls import UrlProblem, redact_url
from kolors_tryon.jobs.validation import (
    JobRejected,
    Problem,
    ValidationOptions,
    ValidJob,
    validate_job,
)

__all__ = [
    "MAX_IMAGE_BYTES",
    "MIN_SIDE",
    "CheckFailed",
    "CreateTaskBody",
    "Garment",
    "ImageInfo",
    "ImageProblem",
    "JobMessage",
    "JobRejected",
    "ModelName",
    "Problem",
    "UrlProblem",
    "ValidJob",
    "ValidationOptions",
    "classify_address",
    "derive_job_id",
    "garment_problem",
    "inspect_image",
    "inspect_image_bytes",
    "is_valid_job_id",
    "job_id_of",
    "job_json_schema",
    "preflight_image_url",
    "redact_url",
    "validate_job",
]
