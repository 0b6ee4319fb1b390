"""Listing jobs on SQLite and PostgreSQL: newest first on (created_at, job_id), each
filter, and keyset pages that neither skip nor repeat a job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.clocks import SettableClock, clocked_store
from kolors_tryon.store import JobState, JobStore, NewJob
from kolors_tryon.store.listing import BadCursor, JobFilter

BODY = {"human_image": "aGk=", "cloth_image": "aGk="}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """A store whose clock moves one second per job recorded (distinct created_at)."""
    clock = SettableClock(start=1_800_000_000.0)
    with clocked_store(request.param, tmp_path, clock) as store:
        _fill(store, clock)
        yield store


def _fill(store: JobStore, clock: SettableClock) -> None:
    """Ten jobs j0..j9, one a second; odd ones sku=odd (n a number), j3 and j7 cancelled."""
    for n in range(10):
        sku = "odd" if n % 2 else "even"
        store.intake.accept([NewJob(f"j{n}", body=BODY, metadata={"sku": sku, "n": n})])
        clock.advance(1)
    store.lifecycle.cancel(["j3", "j7"], reason="by hand")


def _ids(store: JobStore, filters: JobFilter, limit: int = 100) -> list[str]:
    return [r.job_id for r in store.listing.page(filters, limit=limit).records]


def test_pages_follow_the_cursor_newest_first_without_gaps(store: JobStore) -> None:
    """Pages of 3 give every job once, newest first; the last page has no cursor."""
    seen: list[str] = []
    cursor = None
    while True:
        page = store.listing.page(JobFilter(), limit=3, cursor=cursor)
        seen += [r.job_id for r in page.records]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"j{n}" for n in range(9, -1, -1)]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (JobFilter(state=JobState.CANCELLED), ["j7", "j3"]),
        (JobFilter(metadata={"sku": "odd"}), ["j9", "j7", "j5", "j3", "j1"]),
        (JobFilter(metadata={"n": "4"}), ["j4"]),
        (JobFilter(state=JobState.QUEUED, metadata={"sku": "odd"}), ["j9", "j5", "j1"]),
        (
            JobFilter(created_from=1_800_000_002.0, created_before=1_800_000_005.0),
            ["j4", "j3", "j2"],
        ),
    ],
    ids=["state", "metadata-text", "metadata-number", "state-and-metadata", "created-range"],
)
def test_each_filter_narrows_the_listing(
    store: JobStore, filters: JobFilter, expected: list[str]
) -> None:
    """State, a metadata field (text or number), and a created range, alone or together."""
    assert _ids(store, filters) == expected


def test_a_cursor_not_given_by_the_listing_is_refused(store: JobStore) -> None:
    """A mangled cursor is `BadCursor`, never a wrong page."""
    with pytest.raises(BadCursor):
        store.listing.page(JobFilter(), limit=3, cursor="not-a-cursor")
