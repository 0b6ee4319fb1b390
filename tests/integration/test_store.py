"""The job store on SQLite and PostgreSQL: forward-only moves, slots, claims and fences."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, text

from harness import concurrently, fresh_database
from kolors_tryon.config import defaults
from kolors_tryon.errors import JobNotFound, StoreRowMissing, TryonError
from kolors_tryon.store import Admission, Busy, Created, CreatePlan, JobState, JobStore, NewJob

BODY = {"human_image": "aGk=", "cloth_image": "aGk=", "external_task_id": "x"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """A fresh, empty store on each database."""
    if request.param == "sqlite":
        store = JobStore.from_url(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
        store.create_schema()
        yield store
        store.dispose()
        return
    with fresh_database() as url:
        store = JobStore.from_url(url)
        store.create_schema()
        yield store
        store.dispose()


def queue_jobs(store: JobStore, *ids: str, priority: int = 0) -> None:
    for job_id in ids:
        store.intake.accept([NewJob(job_id, body=BODY, priority=priority)])


def test_accept_many_keeps_the_id_rules_of_accept(store: JobStore) -> None:
    """A batch: new jobs in one transaction; a duplicate, a conflict, a resubmission of a
    rejected job and an id twice in the batch each get what `accept` gives them."""
    store.intake.accept([NewJob("known", body=BODY, content_hash="h-known")])
    store.intake.reject("bad", code="invalid_job", message="no", content_hash="h-bad")
    batch = [
        NewJob("new-1", body=BODY, content_hash="h1"),
        NewJob("known", body=BODY, content_hash="h-known"),
        NewJob("known", body=BODY, content_hash="h-other"),
        NewJob("bad", body=BODY, content_hash="h-fixed"),
        NewJob("new-2", body=BODY, content_hash="h2", priority=3),
        NewJob("new-2", body=BODY, content_hash="h2"),
    ]
    admitted = store.intake.accept(batch)
    assert [a.outcome for a in admitted] == [
        Admission.CREATED,
        Admission.DUPLICATE,
        Admission.CONFLICT,
        Admission.RESUBMITTED,
        Admission.CREATED,
        Admission.DUPLICATE,
    ]
    assert [a.record.job_id for a in admitted] == [job.job_id for job in batch]
    assert store.jobs.count_by_state() == {"queued": 4}
    new_2 = store.get("new-2")
    assert new_2 is not None and new_2.priority == 3
    claims = store.claims.next(10, lease_seconds=60)
    assert claims[0].job_id == "new-2"  # the priority was recorded
    plan = store.submits.enter(
        "new-1", next(c.owner for c in claims if c.job_id == "new-1"), window=30, grace=5
    )
    assert isinstance(plan, CreatePlan) and plan.body == BODY  # its create body was kept


def test_batched_intents_and_task_ids_are_fenced_row_by_row(store: JobStore) -> None:
    """`submits.record_intents` and `submits.mark_submitted_many` write only the rows whose
    owner still holds a live claim, and say which; the others are left as they were."""
    queue_jobs(store, "a", "b", "c")
    claims = {c.job_id: c.owner for c in store.claims.next(3, lease_seconds=60)}
    assert store.claims.take_over("b", "thief", lease_seconds=60) is False  # lease still live
    granted = store.submits.record_intents(
        [("a", claims["a"]), ("b", "not-the-owner"), ("c", claims["c"])], window=30
    )
    assert granted == {"a", "c"}
    records = store.submits.mark_submitted_many(
        [
            Created("a", claims["a"], "T-a"),
            Created("b", "not-the-owner", "T-b"),
            Created("c", claims["c"], "T-c", processing=True),
        ]
    )
    assert [r.state if r else None for r in records] == [
        JobState.SUBMITTED,
        None,
        JobState.PROCESSING,
    ]
    assert [r.kling_task_id if r else None for r in records] == ["T-a", None, "T-c"]
    b = store.get("b")
    assert b is not None and b.state is JobState.SUBMITTING and b.attempts == 0
    plan = store.submits.enter("b", claims["b"], window=30, grace=5)  # its photos are kept
    assert isinstance(plan, CreatePlan) and plan.body == BODY


def test_batched_entries_open_each_window_once(store: JobStore) -> None:
    """`submits.enter_many`: a plan only for the owner of a live claim whose window is closed;
    the same claim twice in one batch, or two runs entering at once, open it once."""
    queue_jobs(store, "a", "b", "c")
    claims = {c.job_id: c.owner for c in store.claims.next(3, lease_seconds=60)}
    entries = store.submits.enter_many(
        [("a", claims["a"]), ("a", claims["a"]), ("b", "not-the-owner"), ("nope", "x")],
        window=30,
        grace=5,
    )
    assert isinstance(entries[0], CreatePlan) and entries[0].body == BODY
    assert isinstance(entries[1], Busy)
    assert entries[2:] == [None, None]
    # Two copies of one message entering together: exactly one gets to send.
    results: list[object] = []
    lock = threading.Lock()

    def enter() -> None:
        (entry,) = store.submits.enter_many([("c", claims["c"])], window=30, grace=5)
        with lock:
            results.append(entry)

    concurrently(enter, threads=6)
    assert sum(isinstance(entry, CreatePlan) for entry in results) == 1
    assert sum(isinstance(entry, Busy) for entry in results) == 5


def test_the_store_keeps_the_database_clock_between_readings(tmp_path: Path) -> None:
    """`now()` is the server's clock (read at most once per STORE_CLOCK_REFRESH, then
    kept by the steady clock): within a few milliseconds of the server's own reading."""
    with fresh_database() as url:
        store = JobStore.from_url(url)
        readings: list[str] = []

        def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            if "clock_timestamp" in statement:
                readings.append(statement)

        event.listen(store.engine, "before_cursor_execute", count)
        try:
            for _ in range(20):
                ours = store.now()
                with store.engine.connect() as connection:
                    server = connection.scalar(text("SELECT extract(epoch from clock_timestamp())"))
                assert abs(float(server) - ours) < 0.05
            by_store = len(readings) - 20  # the test's own 20 readings are counted too
            assert 1 <= by_store <= 2, f"the store read the server's clock {by_store} times"
            time.sleep(defaults.STORE_CLOCK_REFRESH + 0.1)
            before = len(readings)
            store.now()
            assert len(readings) == before + 1  # read again once the refresh is due
        finally:
            store.dispose()


def test_accept_is_idempotent_per_job_id(store: JobStore) -> None:
    """Accepting the same id twice keeps one queued job."""
    first = store.intake.accept([NewJob("a", body=BODY)])[0]
    again = store.intake.accept([NewJob("a", body=BODY)])[0]
    assert first.changed and not again.changed
    assert first.record.state is JobState.QUEUED and again.record.job_id == "a"
    assert store.jobs.count_by_state() == {"queued": 1}


def test_reject_does_not_overwrite_an_existing_job(store: JobStore) -> None:
    """A rejected duplicate of a known job id leaves the known job alone."""
    queue_jobs(store, "a")
    admitted = store.intake.reject("a", code="invalid_job", message="x")
    assert not admitted.changed and admitted.record.state is JobState.QUEUED


def test_claims_respect_the_limit_and_fifo_within_priority(store: JobStore) -> None:
    """Slots go to the oldest jobs, higher priority first, never beyond the limit."""
    queue_jobs(store, "a", "b", "c", "d")
    queue_jobs(store, "urgent", priority=5)
    claims = store.claims.next(3, lease_seconds=60)
    assert [c.job_id for c in claims] == ["urgent", "a", "b"]
    assert store.claims.next(3, lease_seconds=60) == []
    assert store.jobs.in_flight() == 3
    store.tracking.finish("a", JobState.FAILED, error_code="x", error_message="y")
    assert [c.job_id for c in store.claims.next(3, lease_seconds=60)] == ["c"]


def test_concurrent_claims_never_exceed_the_limit(store: JobStore) -> None:
    """Eight threads claiming at once hand out exactly the free slots."""
    queue_jobs(store, *[f"j{i}" for i in range(30)])
    results: list[int] = []
    lock = threading.Lock()

    def claim() -> None:
        got = store.claims.next(5, lease_seconds=60)
        with lock:
            results.append(len(got))

    concurrently(claim, threads=8)
    assert sum(results) == 5
    assert store.jobs.in_flight() == 5


def test_only_the_owner_submits_and_intent_is_remembered(store: JobStore) -> None:
    """enter_submit: only the claim owner gets a plan; a pending create is reported next time."""
    queue_jobs(store, "a")
    (claim,) = store.claims.next(1, lease_seconds=60)
    assert store.submits.enter("a", "someone-else", window=30, grace=5) is None
    plan = store.submits.enter("a", claim.owner, window=30, grace=5)
    assert isinstance(plan, CreatePlan)
    assert not plan.maybe_created and plan.body == BODY
    # A redelivery while the attempt window is open must wait, not race.
    assert isinstance(store.submits.enter("a", claim.owner, window=30, grace=5), Busy)
    assert store.submits.record_intent("a", claim.owner, window=30)
    store.submits.leave("a", claim.owner)
    again = store.submits.enter("a", claim.owner, window=30, grace=5)
    assert isinstance(again, CreatePlan)
    assert again.maybe_created and again.attempts == 1
    # The worker died after its intent: "not found" is not trusted until the create
    # could have become visible (the window of its POST, then the grace).
    assert 30 < again.trust_not_found_in <= 35


def test_submitted_forgets_the_photos_and_moves_forward_only(store: JobStore) -> None:
    """mark_submitted drops the payload; a terminal job never moves again."""
    queue_jobs(store, "a")
    (claim,) = store.claims.next(1, lease_seconds=60)
    record = store.submits.mark_submitted("a", claim.owner, task_id="T1")
    assert record is not None and record.state is JobState.SUBMITTED
    assert record.kling_task_id == "T1"
    assert store.submits.mark_submitted("a", claim.owner, task_id="T2") is None
    assert store.tracking.mark_processing("a") is not None
    assert store.tracking.mark_processing("a") is None  # processing -> processing is not a move
    assert store.tracking.finish("a", JobState.SUCCEEDED) is not None
    assert store.tracking.finish("a", JobState.FAILED, error_code="x") is None
    final = store.get("a")
    assert final is not None and final.state is JobState.SUCCEEDED


def test_poll_fence_lets_one_message_through(store: JobStore) -> None:
    """Two track messages with the same poll number: exactly one proceeds."""
    queue_jobs(store, "a")
    (claim,) = store.claims.next(1, lease_seconds=60)
    store.submits.mark_submitted("a", claim.owner, task_id="T1")
    assert store.tracking.enter_poll("a", 0)
    assert not store.tracking.enter_poll("a", 0)
    assert store.tracking.enter_poll("a", 1)


def test_expired_claims_are_taken_over(store: JobStore) -> None:
    """A claim whose lease ran out gets a new owner; the old owner is shut out."""
    queue_jobs(store, "a")
    (claim,) = store.claims.next(1, lease_seconds=-1)
    assert store.claims.expired() == ["a"]
    assert store.claims.take_over("a", "new-owner", lease_seconds=60)
    assert store.submits.enter("a", claim.owner, window=30, grace=5) is None
    assert store.submits.enter("a", "new-owner", window=30, grace=5) is not None


def test_pause_blocks_claims_and_admits_one_probe(store: JobStore) -> None:
    """While paused nothing is claimed; once due, one probe; clearing resumes claims."""
    queue_jobs(store, "a", "b", "c")
    store.account.pause("kling_1102", "out of units", retry_in=10**9)
    assert store.claims.next(5, lease_seconds=60) == []
    store.account.pause("kling_1102", "out of units", retry_in=-1)
    probe = store.claims.next(5, lease_seconds=60)
    assert len(probe) == 1
    assert store.claims.next(5, lease_seconds=60) == []  # the probe is still submitting
    assert store.account.take_probe(next_in=10**9)
    assert not store.account.take_probe(next_in=10**9)
    assert store.account.clear_pause()
    assert len(store.claims.next(5, lease_seconds=60)) == 2


def test_housekeeping_turns_go_to_one_caller_per_period(store: JobStore) -> None:
    """Expired results are deleted, and sweeps rescue, by one caller per period."""
    assert store.account.take_results_cleanup(every=3600)
    assert not store.account.take_results_cleanup(every=3600)
    assert store.account.take_sweep(every=15)
    assert not store.account.take_sweep(every=15)
    assert store.account.take_results_cleanup(every=0)  # the period is over at once


def test_generated_secret_is_the_same_for_every_caller(store: JobStore) -> None:
    """The first caller's generated secret is kept; later generators are not used."""
    first = store.secrets.get("demo", lambda: "one")
    assert store.secrets.get("demo", lambda: "two") == first == "one"


def test_missing_rows_raise_the_service_errors_that_are_lookup_errors(store: JobStore) -> None:
    """An unknown job raises `JobNotFound` and a store without its account row raises
    `StoreRowMissing`: both are `TryonError`s, and callers catching `LookupError` still
    catch them."""
    assert store.get("nobody") is None
    with pytest.raises(JobNotFound) as missing:
        store.jobs.require("nobody")
    assert isinstance(missing.value, LookupError) and isinstance(missing.value, TryonError)
    assert missing.value.job_id == "nobody"
    with store.db.transaction() as (s, _):
        s.execute(text("DELETE FROM tryon_account"))
    with pytest.raises(LookupError) as no_account:
        store.account.pause("kling_1102", "out of units", retry_in=1)
    assert isinstance(no_account.value, StoreRowMissing)
