"""Orchestration edge cases, specified by calling the pipeline on a Runtime.

The store runs on SQLite with a clock the test moves (no sleeping for leases, windows,
graces or deadlines); the Kling client talks to the emulator over HTTP, and what
reached the paid API is counted there.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import TEST_API_KEY, SettableClock, runtime_with_clock, sample_b64, wait_until
from kolors_tryon.config import Settings, defaults
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.jobs import validate_job
from kolors_tryon.pipeline import (
    Runtime,
    Step,
    copy_results,
    intake,
    submit_batch,
    submit_job,
    sweep,
    track_job,
)
from kolors_tryon.pipeline.callback_tokens import callback_secrets, verify_callback_token
from kolors_tryon.pipeline.callbacks import receive_callback
from kolors_tryon.pipeline.dispatch import stale_after
from kolors_tryon.pipeline.submit import attempt_window
from kolors_tryon.store import Claim, CreatePlan, JobState, NewJob

GRACE = 10.0
LEASE = 30.0
DEADLINE = 600.0


@pytest.fixture
def clock() -> SettableClock:
    """The store's clock, moved by the test."""
    return SettableClock()


@pytest.fixture
def rt(tmp_path: Path, emulator: EmulatorServer, clock: SettableClock) -> Iterator[Runtime]:
    """A runtime on SQLite with the settable clock and short, round numbers."""
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path,
            "kling_base_url": emulator.base_url,
            "kling_api_key": TEST_API_KEY,
            "create_visibility_grace": GRACE,
            "submit_lease_seconds": LEASE,
            "track_deadline": DEADLINE,
            "http_connect_timeout": 2,
            "http_read_timeout": 5,
            "http_attempts": 1,
            # The emulator serves its results from loopback.
            "result_allow_private": True,
        }
    )
    runtime = runtime_with_clock(settings, clock)
    yield runtime
    runtime.close()


def queue(rt: Runtime, job_id: str) -> None:
    valid = validate_job(
        {
            "job_id": job_id,
            "human_image": sample_b64("human.jpg"),
            "cloth_image": sample_b64("cloth-red.png"),
        }
    )
    rt.store.intake.accept([NewJob(valid.job_id, body=valid.body.to_request())])


def claim(rt: Runtime, job_id: str) -> str:
    queue(rt, job_id)
    (got,) = rt.store.claims.next(5, lease_seconds=LEASE)
    assert got.job_id == job_id
    return got.owner


def submitted(rt: Runtime, job_id: str) -> str:
    """Claim and submit a job; returns its poll number for the first track."""
    owner = claim(rt, job_id)
    step = submit_job(rt, job_id, owner)
    record = rt.store.get(job_id)
    assert record is not None and record.state is JobState.SUBMITTED, step.note
    return owner


def state(rt: Runtime, job_id: str) -> JobState:
    record = rt.store.get(job_id)
    assert record is not None
    return record.state


# --------------------------------------------------------------------- claims --------
def test_expired_lease_is_taken_over_and_the_new_owner_adopts_the_task(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """A create whose answer was lost, then its worker died: the sweep's new owner adopts."""
    # A task long enough to be still `submitted` when it is adopted on a loaded machine.
    emulator.configure(task_duration=60)
    emulator.configure(drop_rate=1.0)
    owner = claim(rt, "job-1")
    step = submit_job(rt, "job-1", owner)
    assert step.again_in is not None  # unresolved: looked up later, never re-sent blind
    emulator.configure(drop_rate=0.0)
    # The worker dies before its retry runs: nothing happens until the lease runs out.
    assert sweep(rt).resubmit == ()
    clock.advance(step.again_in + LEASE + 1)
    (rescued,) = sweep(rt).resubmit
    assert rescued.owner != owner
    assert submit_job(rt, "job-1", owner).note == "not the claim owner: nothing to do"
    submit_job(rt, "job-1", rescued.owner)
    assert state(rt, "job-1") is JobState.SUBMITTED
    assert emulator.stats()["creates"] == 1


def test_claim_taken_over_between_lookup_and_create_sends_one_create(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """The old owner's slow lookup outlives its claim: only the new owner creates."""
    emulator.configure(create_error=5000)  # an ambiguous first attempt, no task made
    old = claim(rt, "job-1")
    submit_job(rt, "job-1", old)
    emulator.configure(create_error=None, slow_rate=1.0, slow_seconds=1.5)
    clock.advance(GRACE + 1)  # "not found" is trusted from now on
    old_step: list[str] = []
    looking = threading.Thread(
        target=lambda: old_step.append(submit_job(rt, "job-1", old, waits=1).note)
    )
    looking.start()  # the old owner is now inside its (slow) lookup
    threading.Event().wait(0.5)
    clock.advance(attempt_window(rt) + LEASE + 1)  # its window and lease run out meanwhile
    (taken,) = sweep(rt).resubmit
    new_step = submit_job(rt, "job-1", taken.owner, waits=0)
    looking.join(timeout=30)
    assert old_step == ["claim lost before create"]
    assert new_step.note == "submitted"
    stats = emulator.stats()
    assert stats["create_requests"] == 2 and stats["creates"] == 1  # the 5000, then one


def test_no_takeover_while_an_attempt_window_is_open(rt: Runtime, clock: SettableClock) -> None:
    """A lease that ran out does not free a claim whose owner may be mid-POST."""
    owner = claim(rt, "job-1")
    assert rt.store.submits.record_intent("job-1", owner, window=100)
    clock.advance(LEASE + 1)  # the lease alone has run out...
    assert rt.store.claims.expired() == []  # ...but the attempt window has not
    clock.advance(100)
    assert rt.store.claims.expired() == ["job-1"]


def test_an_owner_whose_lease_ran_out_may_not_write_its_intent(
    rt: Runtime, clock: SettableClock
) -> None:
    """record_intent is fenced by the lease: a late owner sends nothing."""
    owner = claim(rt, "job-1")
    clock.advance(LEASE + 1)
    assert not rt.store.submits.record_intent("job-1", owner, window=10)


# --------------------------------------------------------------------- ambiguity -----
def test_not_found_is_not_trusted_before_the_grace(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """A lagging index hides the task after a lost answer: we wait, and then adopt it."""
    emulator.configure(drop_rate=1.0, index_lag=1.5)
    owner = claim(rt, "job-1")
    submit_job(rt, "job-1", owner)  # task made at Kling, answer lost
    emulator.configure(drop_rate=0.0)
    clock.advance(GRACE / 2)
    early = submit_job(rt, "job-1", owner, waits=1)  # lookup: "not found" (lagging)
    assert early.again_in is not None and state(rt, "job-1") is JobState.SUBMITTING
    assert emulator.stats()["create_requests"] == 1  # nothing sent on a fresh "not found"
    threading.Event().wait(1.6)  # the emulator's index catches up (its own clock)
    clock.advance(early.again_in)
    submit_job(rt, "job-1", owner, waits=2)
    assert state(rt, "job-1") is JobState.SUBMITTED
    stats = emulator.stats()
    assert stats["create_requests"] == 1 and stats["tasks_by_external_id"] == {"job-1": 1}


def test_clean_failure_after_an_ambiguous_attempt_keeps_the_ambiguity(
    rt: Runtime, clock: SettableClock
) -> None:
    """A 1303 proves only that its own POST made nothing: an earlier doubt remains."""
    owner = claim(rt, "job-1")
    assert rt.store.submits.record_intent("job-1", owner, window=10)
    rt.store.submits.note_failed_create(
        "job-1", owner, ambiguous=True, spend_retry=True, grace=GRACE
    )
    assert rt.store.submits.record_intent("job-1", owner, window=10)
    rt.store.submits.note_failed_create(
        "job-1", owner, ambiguous=False, spend_retry=False, grace=GRACE
    )
    rt.store.submits.leave("job-1", owner)
    plan = rt.store.submits.enter("job-1", owner, window=10, grace=GRACE)
    assert isinstance(plan, CreatePlan)
    assert plan.maybe_created and plan.trust_not_found_in > 0


def test_refused_create_after_a_lost_answer_is_not_a_rejection(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """A create refused as a duplicate, while the lookup fails: the job waits, not rejected."""
    # A task long enough to be still `submitted` when it is adopted on a loaded machine.
    emulator.configure(task_duration=60)
    emulator.configure(drop_rate=1.0)
    owner = claim(rt, "job-1")
    submit_job(rt, "job-1", owner)
    # Next run: the lookup fails (5000) and so does every call for a while.
    emulator.configure(drop_rate=0.0, error_rate=1.0)
    step = submit_job(rt, "job-1", owner, waits=1)
    assert step.again_in is not None
    assert state(rt, "job-1") is JobState.SUBMITTING
    emulator.configure(error_rate=0.0)
    clock.advance(step.again_in)
    submit_job(rt, "job-1", owner, waits=2)
    assert state(rt, "job-1") is JobState.SUBMITTED
    assert emulator.stats()["creates"] == 1


# --------------------------------------------------------------------- tracking ------
def test_stale_track_message_is_fenced(rt: Runtime, emulator: EmulatorServer) -> None:
    """Two track messages with the same poll number: one queries, the other does nothing."""
    emulator.configure(task_duration=60)
    submitted(rt, "job-1")
    first = track_job(rt, "job-1", 0)
    assert first.track_in is not None and first.track_poll == 1
    assert track_job(rt, "job-1", 0).note == "stale track message"
    assert emulator.stats()["queries"] == 1


def test_deadline_passed_while_kling_finished_gives_the_result(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """Our deadline passed (messages waited out an outage), Kling had finished: succeeded."""
    emulator.configure(task_duration=0.0)
    submitted(rt, "job-1")
    clock.advance(DEADLINE + 60)
    step = track_job(rt, "job-1", 0)
    record = rt.store.get("job-1")
    assert record is not None
    assert record.state is JobState.SUCCEEDED, record.error
    assert record.images and step.dispatch


def overdue_job(rt: Runtime, clock: SettableClock, job_id: str = "job-1") -> Step:
    """Submit a job and move our clock past its deadline; its first poll, overdue."""
    submitted(rt, job_id)
    clock.advance(DEADLINE + 1)
    step = track_job(rt, job_id, 0)
    assert step.note == "overdue", step.note
    return step


def test_deadline_while_running_reports_overdue_and_keeps_following_to_the_result(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """A task still running at our deadline: the job is reported overdue once (a flag,
    not a state), keeps its slot, is polled at the slower pace, and ends succeeded."""
    emulator.configure(task_duration=2.0)  # real seconds: it ends while we look
    step = overdue_job(rt, clock)
    queue(rt, "job-2")
    (flagged,) = step.overdue
    assert flagged.state in (JobState.SUBMITTED, JobState.PROCESSING)
    assert flagged.overdue_at is not None and flagged.error is None
    assert not step.dispatch and step.track_in == rt.settings.overdue_poll_interval
    # Kling still counts the task: our count keeps it, so no slot is handed out for it.
    assert rt.store.jobs.in_flight() == 1
    assert rt.store.claims.next(1, lease_seconds=LEASE) == []
    again = track_job(rt, "job-1", step.track_poll)
    if again.note == "overdue":  # still running: reported once only
        assert again.overdue == () and again.track_in == rt.settings.overdue_poll_interval
        wait_until(lambda: rt.kling.get("job-1").is_terminal, 10, what="the task to end at Kling")
        clock.advance(rt.settings.overdue_poll_interval)
        again = track_job(rt, "job-1", again.track_poll)
    assert again.note == "succeeded" and again.dispatch
    record = rt.store.get("job-1")
    assert record is not None and record.state is JobState.SUCCEEDED and record.images
    assert record.overdue_at == flagged.overdue_at  # the report stays on the record
    assert [c.job_id for c in rt.store.claims.next(1, lease_seconds=LEASE)] == ["job-2"]
    assert emulator.stats()["creates"] == 1


def test_overdue_job_ends_failed_when_kling_says_failed(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """An overdue task that Kling then fails: the job ends failed with Kling's reason."""
    emulator.configure(task_duration=1.0, fail_rate=1.0)
    step = overdue_job(rt, clock)
    wait_until(lambda: rt.kling.get("job-1").is_terminal, 10, what="the task to end at Kling")
    clock.advance(rt.settings.overdue_poll_interval)
    ended = track_job(rt, "job-1", step.track_poll)
    record = rt.store.get("job-1")
    assert record is not None and record.state is JobState.FAILED and ended.dispatch
    assert record.error is not None and record.error.code == "kling_task_failed"
    assert record.overdue_at is not None


def test_overdue_job_fails_when_klings_thirty_days_have_passed(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """A task that never ends: followed until Kling's 30 days are over, then failed
    (`expired`) and its slot freed; the state never moved backwards meanwhile."""
    emulator.configure(task_duration=3600)
    step = overdue_job(rt, clock)
    clock.advance(defaults.KLING_TASK_LIFETIME - DEADLINE - 10)
    step = track_job(rt, "job-1", step.track_poll)
    assert step.note == "overdue" and step.overdue == ()
    clock.advance(20)
    ended = track_job(rt, "job-1", step.track_poll)
    record = rt.store.get("job-1")
    assert record is not None and record.state is JobState.FAILED and ended.dispatch
    assert record.error is not None and record.error.code == "expired"
    assert rt.store.jobs.in_flight() == 0


def test_an_overdue_chain_is_restarted_only_after_its_slower_pace(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """The sweep leaves a live overdue chain alone (it polls every overdue_poll_interval)
    and restarts one that missed three of its polls."""
    emulator.configure(task_duration=3600)
    step = overdue_job(rt, clock)
    clock.advance(stale_after(rt) + 1)  # a normal chain would be stale by now
    assert sweep(rt).retrack == ()
    clock.advance(stale_after(rt, overdue=True))
    assert sweep(rt).retrack == (("job-1", step.track_poll),)


def test_a_job_failed_at_the_deadline_by_an_earlier_version_frees_its_slot_at_the_end(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """A row an earlier version failed at the deadline (lingering) keeps its slot until
    Kling ends its task, or a second deadline passes."""
    emulator.configure(task_duration=3600)
    submitted(rt, "job-1")
    queue(rt, "job-2")
    clock.advance(DEADLINE + 1)
    record = rt.store.tracking.finish(
        "job-1", JobState.FAILED, error_code="deadline", error_message="old", lingering=True
    )
    assert record is not None and rt.store.jobs.in_flight() == 1
    still = track_job(rt, "job-1", 0)
    assert still.note == "lingering" and not still.dispatch
    clock.advance(DEADLINE + 1)  # a second deadline: give the slot back regardless
    released = track_job(rt, "job-1", still.track_poll)
    assert released.dispatch and rt.store.jobs.in_flight() == 0
    assert [c.job_id for c in rt.store.claims.next(1, lease_seconds=LEASE)] == ["job-2"]


def test_stale_tracking_chain_is_restarted_by_the_sweep(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """A tracked job nobody polled for long gets a new track message with its poll number."""
    emulator.configure(task_duration=3600)
    submitted(rt, "job-1")
    track_job(rt, "job-1", 0)
    assert sweep(rt).retrack == ()
    clock.advance(3600)
    assert sweep(rt).retrack == (("job-1", 1),)


def test_sweeps_that_pile_up_do_the_work_once(rt: Runtime, clock: SettableClock) -> None:
    """Of two sweeps at once, one rescues; the other only hands out free slots."""
    owner = claim(rt, "job-1")
    assert owner
    clock.advance(attempt_window(rt) + LEASE + 1)
    queue(rt, "job-2")
    first, second = sweep(rt), sweep(rt)
    assert [c.job_id for c in first.resubmit] == ["job-1"]
    assert second.resubmit == () and [c.job_id for c in second.claims] == []
    assert [c.job_id for c in first.claims] == ["job-2"]


# --------------------------------------------------------------------- callbacks -----
def kling_task(rt: Runtime, job_id: str) -> dict[str, object]:
    """The job's task object as Kling knows it now (what a callback would carry)."""
    record = rt.store.get(job_id)
    assert record is not None and record.kling_task_id is not None
    task = rt.kling.get(record.kling_task_id)
    return {
        "task_id": task.task_id,
        "task_status": task.status,
        "task_status_msg": task.status_message,
        "task_info": {"external_task_id": task.external_task_id},
        "task_result": {"images": [{"index": i.index, "url": i.url} for i in task.images]},
        "final_unit_deduction": task.final_unit_deduction,
    }


def test_succeed_callback_ends_the_job_without_a_query(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    """A `succeed` callback records the result and frees the slot; no status query."""
    emulator.configure(task_duration=0.0)
    submitted(rt, "job-1")
    body = kling_task(rt, "job-1")
    queries = emulator.stats()["queries"]
    step = receive_callback(rt, "job-1", body)
    record = rt.store.get("job-1")
    assert record is not None and record.state is JobState.SUCCEEDED and record.images
    assert step.dispatch and emulator.stats()["queries"] == queries


def test_repeated_late_and_out_of_order_callbacks_change_nothing(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    """After `succeed`, a repeat and a late `processing` leave the record as it is."""
    emulator.configure(task_duration=0.0)
    submitted(rt, "job-1")
    body = kling_task(rt, "job-1")
    receive_callback(rt, "job-1", body)
    before = rt.store.get("job-1")
    assert receive_callback(rt, "job-1", body).changed == ()
    late = {**body, "task_status": "processing", "task_result": None}
    assert receive_callback(rt, "job-1", late).changed == ()
    assert rt.store.get("job-1") == before


FORGED = {
    "succeed-for-a-queued-job": ("queued", {}),
    "another-task-id": ("submitted", {"task_id": "not-our-task"}),
    "another-jobs-external-id": ("submitted", {"task_info": {"external_task_id": "job-2"}}),
    "garbage-status": ("submitted", {"task_status": "done!"}),
    "no-task-id": ("submitted", {"task_id": None}),
}


@pytest.mark.parametrize(("setup", "change"), FORGED.values(), ids=FORGED)
def test_forged_callbacks_change_no_state(
    rt: Runtime, emulator: EmulatorServer, setup: str, change: dict[str, object]
) -> None:
    """A callback that cannot be about the job's task moves nothing, whatever it says."""
    emulator.configure(task_duration=0.0)
    if setup == "queued":
        queue(rt, "job-1")
        body: dict[str, object] = {"task_id": "123", "task_status": "succeed"}
    else:
        submitted(rt, "job-1")
        body = kling_task(rt, "job-1")
    before = rt.store.get("job-1")
    step = receive_callback(rt, "job-1", {**body, **change})
    assert step.changed == () and not step.dispatch
    assert rt.store.get("job-1") == before


def test_callback_before_the_task_id_is_recorded_is_looked_at_again(rt: Runtime) -> None:
    """A very fast task's callback can beat the create's answer: it waits, then applies."""
    claim(rt, "job-1")
    step = receive_callback(rt, "job-1", {"task_id": "1", "task_status": "succeed"})
    assert step.again_in is not None and step.changed == ()
    assert state(rt, "job-1") is JobState.SUBMITTING


def test_creates_carry_our_callback_url_only_when_callbacks_are_on(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    """With TRYON_PUBLIC_URL the create carries our signed callback URL, else none."""
    assert rt.kling_callback_url("job-1") is None
    on = Runtime(
        settings=rt.settings.model_copy(update={"public_url": "https://tryon.example"}),
        store=rt.store,
        kling=rt.kling,
    )
    url = on.kling_callback_url("job-1")
    assert url is not None and url.startswith("https://tryon.example/kling/callback/job-1/")
    secrets = callback_secrets(on.settings, on.store)
    assert verify_callback_token("job-1", url.rsplit("/", 1)[1], secrets.accepted)
    assert not verify_callback_token("job-2", url.rsplit("/", 1)[1], secrets.accepted)


# --------------------------------------------------------------------- job ids -------
def message(job_id: str, cloth: str = "cloth-red.png") -> str:
    return json.dumps(
        {"job_id": job_id, "human_image": sample_b64("human.jpg"), "cloth_image": sample_b64(cloth)}
    )


def test_same_job_again_is_a_duplicate(rt: Runtime) -> None:
    """The same content under the same id, even laid out otherwise: nothing happens."""
    first = intake(rt, message("job-1"))
    again = intake(rt, json.dumps(json.loads(message("job-1")), indent=2, sort_keys=True))
    assert first.note == "queued" and again.note == "duplicate" and again.changed == ()


def test_other_content_under_a_taken_id_is_recorded_as_a_conflict(rt: Runtime) -> None:
    """Another job under a queued job's id: not taken, counted, noted, announced."""
    intake(rt, message("job-1"))
    step = intake(rt, message("job-1", cloth="cloth-blue.png"))
    assert step.note == "conflict" and step.changed == ()
    (record,) = step.conflicts
    assert record.state is JobState.QUEUED and record.conflicts == 1
    assert record.note is not None and "other content" in record.note


def test_a_rejected_job_sent_again_corrected_starts_over(rt: Runtime) -> None:
    """A rejected job's id with a fixed message: the job is queued again, counted."""
    bad = json.dumps({"job_id": "job-1", "human_image": "???", "cloth_image": "x"})
    rejected = intake(rt, bad)
    assert state(rt, "job-1") is JobState.REJECTED and rejected.changed
    fixed = intake(rt, message("job-1"))
    assert fixed.note == "queued" and fixed.dispatch
    record = rt.store.get("job-1")
    assert record is not None and record.state is JobState.QUEUED
    assert record.resubmissions == 1 and record.error is None
    assert [c.job_id for c in rt.store.claims.next(5, lease_seconds=LEASE)] == ["job-1"]


def test_a_rejected_job_sent_again_still_invalid_says_the_new_reason(rt: Runtime) -> None:
    """Resubmitted but still invalid: rejected again, with the latest reason."""
    intake(rt, json.dumps({"job_id": "job-1", "human_image": "???", "cloth_image": "x"}))
    again = intake(rt, json.dumps({"job_id": "job-1", "cloth_image": "x"}))
    record = rt.store.get("job-1")
    assert record is not None and record.state is JobState.REJECTED and again.changed
    assert record.error is not None and "human_image" in record.error.message
    assert record.resubmissions == 1


# --------------------------------------------------------------------- result copies --
def succeeded(rt: Runtime, emulator: EmulatorServer, job_id: str) -> Step:
    """Run a job to success at Kling and record it; the track step that ended it."""
    emulator.configure(task_duration=0.0)
    submitted(rt, job_id)
    step = track_job(rt, job_id, 0)
    assert state(rt, job_id) is JobState.SUCCEEDED, step.note
    return step


def test_success_is_recorded_before_the_copy_which_fills_in_stored_and_sha256(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    """The job succeeds with Kling's URL and stored null; the copy step fills both in."""
    step = succeeded(rt, emulator, "job-1")
    assert step.copy_results and step.dispatch
    record = rt.store.get("job-1")
    assert record is not None and [img.stored for img in record.images] == [None]
    assert copy_results(rt, "job-1").again_in is None
    record = rt.store.get("job-1")
    assert record is not None
    (image,) = record.images
    assert image.stored is not None and image.sha256 is not None
    data = Path(image.stored).read_bytes()
    assert hashlib.sha256(data).hexdigest() == image.sha256
    assert rt.store.copies.status("job-1") is None
    assert copy_results(rt, "job-1").note == "nothing to copy"


def test_a_copy_made_twice_keeps_the_first_and_deletes_nothing(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    """A duplicate copy run (redelivery, sweep) overwrites the same key and keeps the file."""
    succeeded(rt, emulator, "job-1")
    rt.store.copies.expect("job-1")
    copy_results(rt, "job-1")
    record = rt.store.get("job-1")
    assert record is not None and record.images[0].stored is not None
    late = record.images[0].model_copy(update={"sha256": "0" * 64})
    assert rt.store.copies.record("job-1", [late]) == [record.images[0].stored]
    assert rt.store.get("job-1") == record  # not overwritten by the late copy
    assert Path(record.images[0].stored).is_file()


def test_a_lost_copy_is_sent_again_by_the_sweep_once_per_period(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """A copy due but never run (its message lost) is re-sent after COPY_LOST_AFTER, once."""
    succeeded(rt, emulator, "job-1")
    assert sweep(rt).recopy == ()
    clock.advance(defaults.COPY_LOST_AFTER + 1)
    assert sweep(rt).recopy == ("job-1",)
    clock.advance(rt.settings.sweep_interval)
    assert sweep(rt).recopy == ()
    clock.advance(defaults.COPY_LOST_AFTER + 1)
    assert sweep(rt).recopy == ("job-1",)
    copy_results(rt, "job-1")
    clock.advance(defaults.COPY_LOST_AFTER + 1)
    assert sweep(rt).recopy == ()


# --------------------------------------------------------------------- batches -------
# `submit_batch` (several fresh claims in one run) keeps every promise of `submit_job`.
def claims_of(rt: Runtime, count: int, *, unfetchable: int | None = None) -> list[Claim]:
    """`count` new jobs, queued and claimed (as a batch intake's dispatch claims them).

    Job number `unfetchable` gets a garment URL that Kling cannot fetch (a 1201 refusal).
    """
    for i in range(count):
        valid = validate_job(
            {
                "job_id": f"job-{i}",
                "human_image": sample_b64("human.jpg"),
                "cloth_image": sample_b64("cloth-red.png"),
            }
        )
        body = valid.body.to_request()
        if i == unfetchable:
            body["cloth_image"] = "http://127.0.0.1:9/gone.png"
        rt.store.intake.accept([NewJob(valid.job_id, body=body)])
    claims = rt.store.claims.next(100, lease_seconds=LEASE)
    assert len(claims) == count
    return claims


def test_a_batch_makes_one_create_per_job_and_records_every_task(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    claims = claims_of(rt, 5)  # the emulator's account limit
    steps = submit_batch(rt, claims)
    assert [claim.job_id for claim, _ in steps] == [c.job_id for c in claims]
    assert [step.note for _, step in steps] == ["submitted"] * 5
    assert all(step.track_in is not None for _, step in steps)
    assert all(len(step.changed) == 1 for _, step in steps)  # each job's `submitted` record
    assert rt.store.jobs.count_by_state() == {"submitted": 5}
    stats = emulator.stats()
    assert stats["create_requests"] == 5 and stats["creates"] == 5
    assert stats["tasks_by_external_id"] == {c.job_id: 1 for c in claims}
    # The message may come again (a redelivery): nothing more reaches the API.
    again = submit_batch(rt, claims)
    assert {step.note for _, step in again} == {"not the claim owner: nothing to do"}
    assert emulator.stats()["create_requests"] == 5


def test_a_1303_stops_the_rest_of_the_batch_which_then_goes_one_by_one(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """Slots busy: the first refusal stops the batch; nobody else asks in vain, every job
    keeps its claim and waits, and each is created once later."""
    claims = claims_of(rt, 5)
    emulator.configure(create_error=1303)
    steps = submit_batch(rt, claims)
    assert emulator.stats()["create_requests"] == 1  # only the first one asked
    assert all(step.again_in is not None for _, step in steps)
    assert rt.store.jobs.count_by_state() == {"submitting": 5}
    emulator.configure(create_error=None)
    clock.advance(max(step.again_in or 0.0 for _, step in steps))
    for claim in claims:  # what `tryon.submit` under each claim's owner does
        assert submit_job(rt, claim.job_id, claim.owner, waits=1).note == "submitted"
    stats = emulator.stats()
    assert stats["create_requests"] == 6 and stats["creates"] == 5
    assert all(n == 1 for n in stats["tasks_by_external_id"].values())


def test_after_a_server_error_only_the_job_that_got_it_waits_for_the_grace(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    """A 5000 may have made the task: that job looks it up once the grace is over. The
    rest of the batch was never sent: it waits a retry's backoff, not the grace."""
    claims = claims_of(rt, 4)
    emulator.configure(create_error=5000)
    (_, first), *rest = submit_batch(rt, claims)
    assert emulator.stats()["create_requests"] == 1
    assert first.again_in is not None and first.again_in >= GRACE
    assert all(step.again_in is not None and step.again_in < GRACE for _, step in rest)
    for claim in claims[1:]:  # their attempts made nothing: no lookup needed first
        plan = rt.store.submits.enter(claim.job_id, claim.owner, window=30, grace=GRACE)
        assert isinstance(plan, CreatePlan) and not plan.maybe_created


def test_a_batch_sends_a_create_only_while_it_can_end_inside_the_attempt_window(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    """Slow answers (4 s each): the batch moves on after each second of patience, and the
    window (2 x 7 s + 5 s slack) leaves room to start creates for 7 s: at most seven go,
    the rest waits, none of them in doubt."""
    claims = claims_of(rt, 10)
    emulator.configure(slow_rate=1.0, slow_seconds=4.0)
    notes = [step.note for _, step in submit_batch(rt, claims)]
    sent = notes.count("submitted")
    # Each straggler costs the batch CREATE_PATIENCE (1 s), so the 8th would start at 7 s.
    assert 4 <= sent <= 7, notes
    assert notes == ["submitted"] * sent + ["not sent: the batch was stopped"] * (10 - sent)
    assert emulator.stats()["create_requests"] == sent
    for claim in claims[sent:]:
        plan = rt.store.submits.enter(claim.job_id, claim.owner, window=30, grace=GRACE)
        assert isinstance(plan, CreatePlan) and not plan.maybe_created


def test_a_create_answered_after_the_read_timeout_is_recorded_without_a_lookup(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    """The first create's answer comes after the read timeout but inside its attempt
    window: the other creates go at once and are handed over before it ends; its thread
    waits for the answer and records the task, with no lookup and no second create."""
    claims = claims_of(rt, 4)
    # The dice of seed 13 at a rate of one half: slow, fast, fast, fast (a timer that
    # turned the knob off after the first create lost the race on a loaded machine).
    emulator.configure(seed=13, slow_rate=0.5, slow_seconds=7.0)  # the read timeout is 5 s
    early: list[tuple[str, str]] = []

    def hand_over(steps: list[tuple[Claim, Step]]) -> None:
        early.extend((claim.job_id, step.note) for claim, step in steps)

    assert submit_batch(rt, claims, early=hand_over) == []
    assert early == [(f"job-{i}", "submitted") for i in (1, 2, 3)]
    wait_until(lambda: len(early) == 4, 15, what="the late answer to be handed over")
    assert early[3] == ("job-0", "submitted")
    assert rt.store.jobs.count_by_state() == {"submitted": 4}
    stats = emulator.stats()
    assert (stats["create_requests"], stats["creates"], stats["queries"]) == (4, 4, 0)


def test_creates_answered_before_a_straggler_are_handed_over_when_it_is_met(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    """The second and third creates are slow: the first one's step is handed over when
    the second is found straggling, not after the third's patience too."""
    claims = claims_of(rt, 4)
    # The dice of seed 22 at a rate of one half: fast, slow, slow, fast.
    emulator.configure(seed=22, slow_rate=0.5, slow_seconds=3.0)
    early: list[tuple[str, str, int]] = []

    def hand_over(steps: list[tuple[Claim, Step]]) -> None:
        creates = emulator.stats()["create_requests"]
        early.extend((claim.job_id, step.note, creates) for claim, step in steps)

    assert submit_batch(rt, claims, early=hand_over) == []
    assert early == [("job-0", "submitted", 2), ("job-3", "submitted", 4)]
    wait_until(lambda: len(early) == 4, 15, what="the slow creates to be handed over")
    assert sorted(early[2:]) == [("job-1", "submitted", 4), ("job-2", "submitted", 4)]
    assert emulator.stats()["creates"] == 4


def test_a_stalled_create_holds_its_own_job_only(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """The first create's answer comes after its attempt window (the read timeout is 5
    s; the answer is awaited until the window's end, 14 s): the other creates go at once
    and are handed over before it ends; the stalled job is then looked up and adopted,
    never created twice."""
    claims = claims_of(rt, 4)
    emulator.configure(slow_rate=1.0, slow_seconds=15.0)
    # Only the first create meets the slow answer: the knob is read as a request arrives.
    threading.Timer(0.5, lambda: emulator.configure(slow_rate=0.0)).start()
    early: list[tuple[str, str, int]] = []

    def hand_over(steps: list[tuple[Claim, Step]]) -> None:
        creates = emulator.stats()["create_requests"]
        early.extend((claim.job_id, step.note, creates) for claim, step in steps)

    # The run returns once every create was sent, handing over the three quick ones;
    # a thread finishes the stalled one by its window's end and hands it over alone.
    assert submit_batch(rt, claims, early=hand_over) == []
    assert early == [(f"job-{i}", "submitted", 4) for i in (1, 2, 3)]
    wait_until(lambda: len(early) == 4, 25, what="the stalled create to be handed over")
    assert early[3][0] == "job-0" and early[3][1].startswith("retryable: ")
    assert rt.store.jobs.count_by_state() == {"submitted": 3, "submitting": 1}
    (stalled,) = [c for c in claims if c.job_id == "job-0"]
    plan = rt.store.submits.enter(stalled.job_id, stalled.owner, window=30, grace=GRACE)
    assert isinstance(plan, CreatePlan) and plan.maybe_created  # looked up, never resent
    rt.store.submits.leave(stalled.job_id, stalled.owner)
    wait_until(lambda: emulator.stats()["creates"] == 4, 10, what="the slow create to be made")
    clock.advance(GRACE + 1)
    assert submit_job(rt, stalled.job_id, stalled.owner, waits=1).note == "submitted"
    stats = emulator.stats()
    assert stats["create_requests"] == 4 and stats["creates"] == 4
    assert stats["tasks_by_external_id"] == {c.job_id: 1 for c in claims}


def test_a_job_that_may_have_a_task_is_looked_up_not_created_again_in_a_batch(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """A claim with an ambiguous earlier create (its answer was lost) takes the single-job
    path inside the batch: looked up, adopted, never sent twice; the others go as usual."""
    first, *others = claims_of(rt, 4)
    emulator.configure(drop_rate=1.0)
    assert submit_job(rt, first.job_id, first.owner).again_in is not None  # made, answer lost
    emulator.configure(drop_rate=0.0)
    clock.advance(GRACE + 1)
    steps = {claim.job_id: step.note for claim, step in submit_batch(rt, [first, *others])}
    assert set(steps.values()) == {"submitted"}
    assert rt.store.jobs.count_by_state() == {"submitted": 4}
    stats = emulator.stats()
    assert stats["create_requests"] == 4  # the lost one, then one for each other job
    assert stats["tasks_by_external_id"] == {f"job-{i}": 1 for i in range(4)}


def test_a_batch_whose_claims_were_taken_over_sends_nothing(
    rt: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """A batch message that comes too late (its leases ran out and the sweep gave the
    claims to new owners) finds no claim of its own and sends nothing."""
    claims = claims_of(rt, 3)
    clock.advance(LEASE + 1)
    for claim in claims:
        assert rt.store.claims.take_over(claim.job_id, f"new-{claim.job_id}", lease_seconds=LEASE)
    steps = submit_batch(rt, claims)
    assert {step.note for _, step in steps} == {"not the claim owner: nothing to do"}
    assert emulator.stats()["create_requests"] == 0
    assert rt.store.jobs.count_by_state() == {"submitting": 3}


def test_a_refused_job_does_not_stop_the_others(rt: Runtime, emulator: EmulatorServer) -> None:
    """A refusal about one job's content (1201: its garment cannot be fetched) rejects
    that job only; the jobs after it in the batch are still sent."""
    claims = claims_of(rt, 4, unfetchable=1)
    notes = [step.note for _, step in submit_batch(rt, claims)]
    assert notes == ["submitted", "rejected", "submitted", "submitted"]
    assert rt.store.jobs.count_by_state() == {"rejected": 1, "submitted": 3}
    rejected = rt.store.get("job-1")
    assert rejected is not None and rejected.error is not None
    assert "cloth_image" in rejected.error.message
    assert emulator.stats()["create_requests"] == 4
