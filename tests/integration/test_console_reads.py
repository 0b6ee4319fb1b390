"""The console's store reads on a real store (SQLite here; PostgreSQL in bench/console.py
and the console's HTTP tests): keyset pages, filters, the producer scope, the overview."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kolors_tryon.store import JobState, JobStore, NewJob
from kolors_tryon.store.console_reads import ConsoleReads, JobFilter, ProducerScope

DEFAULT = ProducerScope(frozenset({"default"}))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    """Seven queued jobs, two rejected (code `invalid_job`), one succeeded ("1.5" units)."""
    store = JobStore.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store.create_schema()
    for i in range(10):  # one at a time: created_at tells them apart
        metadata = {"sku": f"S{i % 3}"}
        if i in (1, 2):
            store.intake.reject(f"j{i}", code="invalid_job", message="bad", metadata=metadata)
        else:
            store.intake.accept([NewJob(f"j{i}", body={"i": i}, metadata=metadata)])
    assert store.tracking.finish("j3", JobState.SUCCEEDED, final_unit_deduction="1.5") is not None
    yield store
    store.dispose()


def test_keyset_pages_walk_every_job_once_newest_first(store: JobStore) -> None:
    """Pages of 3 give the ten jobs in order, none twice, and the last page says so."""
    reads = ConsoleReads(store.engine)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = reads.page(DEFAULT, JobFilter(), limit=3, cursor=cursor)
        seen += [job.job_id for job in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"j{i}" for i in range(9, -1, -1)]
    assert reads.page(DEFAULT, JobFilter(), limit=3, cursor="not-a-cursor").jobs[0].job_id == "j9"


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (JobFilter(state=JobState.REJECTED), ["j2", "j1"]),
        (JobFilter(metadata_key="sku", metadata_value="S1"), ["j7", "j4", "j1"]),
        (JobFilter(error_code="invalid_job"), ["j2", "j1"]),
        (JobFilter(created_to=0.0), []),
        (JobFilter(created_from=time.time() + 3600), []),
    ],
)
def test_filters(store: JobStore, wanted: JobFilter, expected: list[str]) -> None:
    """State, a metadata field, an error code and dates each narrow the table."""
    page = ConsoleReads(store.engine).page(DEFAULT, wanted, limit=50, cursor=None)
    assert [job.job_id for job in page.jobs] == expected


def test_a_user_of_another_producer_reads_nothing(store: JobStore) -> None:
    """The scope is applied in SQL: no page, job, thumbnail or figure of `default`."""
    reads = ConsoleReads(store.engine)
    other = ProducerScope(frozenset({"other"}))
    assert reads.page(other, JobFilter(), limit=50, cursor=None).jobs == []
    assert reads.job(other, "j3") is None
    assert reads.job(ProducerScope(everything=True), "j3") is not None
    figures = reads.overview(other, time.time())
    assert figures.backlog == 0
    assert figures.ended_24h == {}


def test_the_overview_counts_live_and_ended_jobs_and_units(store: JobStore) -> None:
    """Seven queued, two rejected and one succeeded in the last hour, 1.5 units today."""
    figures = ConsoleReads(store.engine).overview(DEFAULT, store.now())
    assert figures.now["queued"] == 7
    assert figures.backlog == 7
    assert figures.ended_24h == {"rejected": 2, "succeeded": 1}
    assert figures.hourly[23] == {"rejected": 2, "succeeded": 1}
    assert figures.units_today == 1.5
    assert figures.rate_per_hour == 1.0  # rejected jobs never took a slot
    assert figures.expected_wait_seconds == 7 * 3600.0
    assert [job.job_id for job in figures.last_errors] == ["j2", "j1"]
