"""The name of every task, in one enumeration at the bottom layer.

The name is what travels in a task message (Celery's `task` header): workers of an
older or newer release, `tryon web`, the delivery lane and operators reading Flower or
the dead-letter queue all know a task by it. So the values never change; a new task is a
new member. `TaskName` is a `StrEnum`: a member is the string itself on the wire, in a
dictionary key and in a log line.
"""

from __future__ import annotations

from enum import StrEnum, unique

__all__ = ["TaskName"]


@unique
class TaskName(StrEnum):
    """The service's tasks, by the name that travels."""

    INTAKE = "tryon.intake"  # validate and record one job message (or a list of them)
    SUBMIT = "tryon.submit"  # create the Kling task; the Celery task id is the claim owner
    SUBMIT_BATCH = "tryon.submit_batch"  # the creates of several fresh claims
    TRACK = "tryon.track"  # one poll of a job's task (its number is the chain's fence)
    TRACK_BATCH = "tryon.track_batch"  # first polls of jobs submitted together
    CALLBACK = "tryon.callback"  # a Kling callback that `tryon web` authenticated
    COPY_RESULTS = "tryon.copy_results"  # copy a succeeded job's images to our storage
    DISPATCH = "tryon.dispatch"  # hand free account slots to the oldest queued jobs
    SWEEP = "tryon.sweep"  # rescue stranded jobs, then dispatch (each worker's timer)
    RECOVER = "tryon.recover"  # take over lapsed claims at once, unthrottled
    WEBHOOK = "tryon.webhook"  # one attempt of a webhook delivery
    CANCELLED = "tryon.cancelled"  # the events and webhooks of jobs a door cancelled
