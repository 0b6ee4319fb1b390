"""The lifecycle's store moves on SQLite and PostgreSQL: cancels fenced against the
create's intent, deadlines refused by the claim and the intent, links of retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from harness.clocks import SettableClock, clocked_store
from kolors_tryon.store import Created, JobState, JobStore, NewJob
from kolors_tryon.store.lifecycle import DEADLINE_CODE, CancelOutcome
from kolors_tryon.store.tables import PayloadRow

BODY = {"human_image": "aGk=", "cloth_image": "aGk=", "external_task_id": "x"}
WINDOW = 30.0


@pytest.fixture
def clock() -> SettableClock:
    """The store's time, moved by the test instead of waited for."""
    return SettableClock()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: SettableClock
) -> Iterator[JobStore]:
    """A fresh store on each database, keeping time by a clock the test moves."""
    with clocked_store(request.param, tmp_path, clock) as store:
        yield store


def _payload_kept(store: JobStore, job_id: str) -> bool:
    with store.db.session() as s:
        return s.scalar(select(PayloadRow.job_id).where(PayloadRow.job_id == job_id)) is not None


def test_a_queued_job_is_cancelled_once_and_keeps_its_photos_for_a_retry(
    store: JobStore,
) -> None:
    """Cancel moves a queued job to `cancelled` with the reason; again, it says `ended`.
    Its photos stay (until purged or forgotten) for a retry to send."""
    store.intake.accept([NewJob("q", body=BODY)])
    (answer,) = store.lifecycle.cancel(["q"], reason="by hand")
    assert answer.outcome is CancelOutcome.CANCELLED
    assert answer.record is not None and answer.record.state is JobState.CANCELLED
    assert answer.record.error is not None and answer.record.error.code == "cancelled"
    assert answer.record.finished_at is not None
    assert _payload_kept(store, "q")
    again, unknown = store.lifecycle.cancel(["q", "nobody"], reason="by hand")
    assert again.outcome is CancelOutcome.ENDED
    assert unknown.outcome is CancelOutcome.NOT_FOUND and unknown.record is None


def test_a_claim_cancelled_before_its_intent_never_gets_one(store: JobStore) -> None:
    """A job claimed but not yet sent is cancelled; its owner's intent is then refused,
    alone or in a batch, so no create can follow; its slot is free again."""
    store.intake.accept([NewJob("a", body=BODY), NewJob("b", body=BODY)])
    owners = {c.job_id: c.owner for c in store.claims.next(2, lease_seconds=60)}
    assert store.jobs.in_flight() == 2
    answers = store.lifecycle.cancel(["a", "b"], reason="by hand")
    assert [a.outcome for a in answers] == [CancelOutcome.CANCELLED] * 2
    assert not store.submits.record_intent("a", owners["a"], window=WINDOW)
    assert store.submits.record_intents([("b", owners["b"])], window=WINDOW) == set()
    assert store.jobs.in_flight() == 0
    assert store.get("a").attempts == 0  # type: ignore[union-attr]


def test_a_job_whose_intent_was_written_is_never_reported_cancelled(store: JobStore) -> None:
    """Once the intent is written (a create may be on its way), cancel answers `at_kling`
    and the create's answer is recorded as usual."""
    store.intake.accept([NewJob("sent", body=BODY)])
    (claim,) = store.claims.next(1, lease_seconds=60)
    assert store.submits.record_intent("sent", claim.owner, window=WINDOW)
    (answer,) = store.lifecycle.cancel(["sent"], reason="by hand")
    assert answer.outcome is CancelOutcome.AT_KLING
    assert answer.record is not None and answer.record.state is JobState.SUBMITTING
    (record,) = store.submits.mark_submitted_many([Created("sent", claim.owner, "task-1")])
    assert record is not None and record.state is JobState.SUBMITTED
    (later,) = store.lifecycle.cancel(["sent"], reason="by hand")
    assert later.outcome is CancelOutcome.AT_KLING


def test_an_ambiguous_create_keeps_the_job_uncancellable(store: JobStore) -> None:
    """A create that timed out may have made a task: the job cannot be cancelled."""
    store.intake.accept([NewJob("amb", body=BODY)])
    (claim,) = store.claims.next(1, lease_seconds=60)
    assert store.submits.record_intent("amb", claim.owner, window=WINDOW)
    store.submits.note_failed_create("amb", claim.owner, ambiguous=True, spend_retry=True, grace=60)
    (answer,) = store.lifecycle.cancel(["amb"], reason="by hand")
    assert answer.outcome is CancelOutcome.AT_KLING


def test_a_job_past_its_deadline_is_never_claimed_and_is_expired(
    store: JobStore, clock: SettableClock
) -> None:
    """The claim skips a job whose deadline passed; the sweep's expiry cancels it with
    the reason, and leaves the jobs without a deadline (or before it) alone."""
    store.intake.accept(
        [
            NewJob("soon", body=BODY, deadline_in=10),
            NewJob("later", body=BODY, deadline_at=clock.now + 3600),
            NewJob("never", body=BODY),
        ]
    )
    assert store.get("soon").deadline is not None  # type: ignore[union-attr]
    clock.advance(11)
    claimed = {c.job_id for c in store.claims.next(5, lease_seconds=60)}
    assert claimed == {"later", "never"}
    (expired,) = store.lifecycle.expire_due()
    assert expired.job_id == "soon" and expired.state is JobState.CANCELLED
    assert expired.error is not None and expired.error.code == DEADLINE_CODE
    assert "deadline" in expired.error.message
    assert store.lifecycle.expire_due() == []


def test_an_intent_after_the_deadline_is_refused(store: JobStore, clock: SettableClock) -> None:
    """A job claimed before its deadline but sent after it gets no intent (no create);
    `expire` then cancels it."""
    store.intake.accept([NewJob("late", body=BODY, deadline_in=5)])
    (claim,) = store.claims.next(1, lease_seconds=60)
    clock.advance(6)
    assert not store.submits.record_intent("late", claim.owner, window=WINDOW)
    record = store.lifecycle.expire("late")
    assert record is not None and record.state is JobState.CANCELLED
    assert store.jobs.in_flight() == 0


def test_a_record_names_its_retries(store: JobStore) -> None:
    """The new job names the one it retries, and the old one lists its retries."""
    store.intake.accept([NewJob("old", body=BODY)])
    store.intake.accept([NewJob("old-r1", body=BODY, retry_of="old")])
    assert store.get("old-r1").retry_of == "old"  # type: ignore[union-attr]
    assert store.get("old").retried_by == ["old-r1"]  # type: ignore[union-attr]
