"""The root of the service's own errors, at the bottom layer so that every part can use it.

A caller that wants "anything this service refused or could not do" catches `TryonError`;
a caller that wants one kind catches that class. Built-in bases stay beside the root where
callers already rely on them (a `SchemaOutdated` is still a `RuntimeError`, a missing job is
still a `LookupError`). The Kling client keeps its own tree (kling/errors.py), which mirrors
the API's codes and is rooted here too.
"""

from __future__ import annotations


class TryonError(Exception):
    """Anything the service refuses or cannot do, as opposed to a bug."""


class JobNotFound(TryonError, LookupError):
    """No job of that id (for this producer, where producers apply)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")
        self.job_id = job_id


class BatchNotFound(TryonError, LookupError):
    """No batch of that id for this producer (another producer's batch is not found)."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch {batch_id!r}")
        self.batch_id = batch_id


class StoreRowMissing(TryonError, LookupError):
    """A row the store keeps for itself is missing: the account row before
    `create_schema()`, or a row deleted under a running transaction."""
