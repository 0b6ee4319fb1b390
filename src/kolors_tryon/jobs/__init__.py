"""Job contract and validation: what a try-on job is, and whether one may cost a credit.

Pure: no Celery, no database, no network except the optional URL preflight. The worker
calls `validate_job` on every message it takes from the queue; producers can call it
(or `tryon validate`) before publishing, and read batch files with `read_batch`.

The names here are what producers and consumers use; the checks' building blocks
(`jobs.images`, `jobs.preflight`, `jobs.urls`, `jobs.garments`, `jobs.ids`) are
imported from their modules, as are the doors' checks before publishing (`jobs.local`).
"""

from kolors_tryon.jobs.batch import (
    ImageSourceError,
    image_argument,
    read_batch,
    with_image_files_read,
)
from kolors_tryon.jobs.enums import Garment, ModelName
from kolors_tryon.jobs.ids import job_id_of
from kolors_tryon.jobs.images import MAX_IMAGE_BYTES, MIN_SIDE, ImageInfo
from kolors_tryon.jobs.models import CreateTaskBody, JobMessage
from kolors_tryon.jobs.schema import job_json_schema
from kolors_tryon.jobs.validation import (
    JobRejected,
    Problem,
    ValidationOptions,
    ValidJob,
    validate_job,
)

__all__ = [  # noqa: RUF022 - grouped by use, as dramatiq does
    # the message a producer publishes
    "JobMessage",
    "ModelName",
    "Garment",
    "job_id_of",
    "job_json_schema",
    # validating it, as the worker does
    "validate_job",
    "ValidationOptions",
    "ValidJob",
    "ImageInfo",
    "JobRejected",
    "Problem",
    # what Kling receives for a valid job
    "CreateTaskBody",
    # the API's image rules
    "MAX_IMAGE_BYTES",
    "MIN_SIDE",
    # input formats: batch files (JSON Lines, CSV) and image arguments (file or URL)
    "read_batch",
    "with_image_files_read",
    "image_argument",
    "ImageSourceError",
]
