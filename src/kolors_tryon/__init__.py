"""kolors-tryon: try-on jobs from RabbitMQ, through Celery workers, to the Kling API.

The public surface: put jobs on the queue (`enqueue`, `JobPublisher`), read them back
(`get_job`, `list_jobs`), build a worker app (`create_app`), configure (`Settings`).
"""

from kolors_tryon.config import Settings, SettingsError, load_settings
from kolors_tryon.jobs import JobMessage, JobRejected, validate_job
from kolors_tryon.kling import KlingClient, KlingError
from kolors_tryon.producer import JobPublisher, enqueue, get_job, list_jobs
from kolors_tryon.store import JobRecord, JobState
from kolors_tryon.worker import create_app

__all__ = [
    "JobMessage",
    "JobPublisher",
    "JobRecord",
    "JobRejected",
    "JobState",
    "KlingClient",
    "KlingError",
    "Settings",
    "SettingsError",
    "create_app",
    "enqueue",
    "get_job",
    "list_jobs",
    "load_settings",
    "validate_job",
]
