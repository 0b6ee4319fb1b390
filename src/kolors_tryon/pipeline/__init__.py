"""The Celery-free core of the service: intake, submit, track and the sweep.

Each step reads and writes the job store, talks to Kling through the client, and returns
a `Step` that tells the thin Celery task what to do next (publish events, run again
later, track, hand out freed slots). Nothing here imports Celery.
"""

from kolors_tryon.pipeline.batch_creates import submit_batch
from kolors_tryon.pipeline.dispatch import dispatch, recover, sweep
from kolors_tryon.pipeline.intake import intake, intake_many
from kolors_tryon.pipeline.results import copy_results
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step
from kolors_tryon.pipeline.submit import submit_job
from kolors_tryon.pipeline.track import track_job

__all__ = [
    "Runtime",
    "Step",
    "copy_results",
    "dispatch",
    "intake",
    "intake_many",
    "recover",
    "submit_batch",
    "submit_job",
    "sweep",
    "track_job",
]
