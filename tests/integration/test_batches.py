"""Batched submission (`submit_batch`) keeps every per-job promise of `submit_job`.

Specified on a Runtime like tests/integration/test_orchestration.py: SQLite with a clock
the test moves, the Kling client against the emulator over HTTP, and what reached the
paid API counted there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import TEST_API_KEY, SettableClock, runtime_with_clock, sample_b64
from kolors_tryon.config import Settings
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.jobs import validate_job
from kolors_tryon.pipeline import Runtime, submit_batch, submit_job
from kolors_tryon.store import Claim, CreatePlan

GRACE = 10.0
LEASE = 30.0


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def rt(tmp_path: Path, emulator: EmulatorServer, clock: SettableClock) -> Iterator[Runtime]:
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path,
            "kling_base_url": emulator.base_url,
            "kling_api_key": TEST_API_KEY,
            "create_visibility_grace": GRACE,
            "submit_lease_seconds": LEASE,
            "http_connect_timeout": 2,
            "http_read_timeout": 5,
            "http_attempts": 1,
        }
    )
    runtime = runtime_with_clock(settings, clock)
    yield runtime
    runtime.close()


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
        rt.store.accept(valid.job_id, body=body)
    claims = rt.store.claim_next(100, lease_seconds=LEASE)
    assert len(claims) == count
    return claims


def states(rt: Runtime) -> dict[str, int]:
    return rt.store.count_by_state()


def test_a_batch_makes_one_create_per_job_and_records_every_task(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    claims = claims_of(rt, 5)  # the emulator's account limit
    steps = submit_batch(rt, claims)
    assert [claim.job_id for claim, _ in steps] == [c.job_id for c in claims]
    assert [step.note for _, step in steps] == ["submitted"] * 5
    assert all(step.track_in is not None for _, step in steps)
    assert all(len(step.changed) == 1 for _, step in steps)  # each job's `submitted` record
    assert states(rt) == {"submitted": 5}
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
    assert states(rt) == {"submitting": 5}
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
        plan = rt.store.enter_submit(claim.job_id, claim.owner, window=30, grace=GRACE)
        assert isinstance(plan, CreatePlan) and not plan.maybe_created


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
    assert states(rt) == {"submitted": 4}
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
        assert rt.store.take_over(claim.job_id, f"new-{claim.job_id}", lease_seconds=LEASE)
    steps = submit_batch(rt, claims)
    assert {step.note for _, step in steps} == {"not the claim owner: nothing to do"}
    assert emulator.stats()["create_requests"] == 0
    assert states(rt) == {"submitting": 3}


def test_a_refused_job_does_not_stop_the_others(rt: Runtime, emulator: EmulatorServer) -> None:
    """A refusal about one job's content (1201: its garment cannot be fetched) rejects
    that job only; the jobs after it in the batch are still sent."""
    claims = claims_of(rt, 4, unfetchable=1)
    notes = [step.note for _, step in submit_batch(rt, claims)]
    assert notes == ["submitted", "rejected", "submitted", "submitted"]
    assert states(rt) == {"rejected": 1, "submitted": 3}
    rejected = rt.store.get("job-1")
    assert rejected is not None and rejected.error is not None
    assert "cloth_image" in rejected.error.message
    assert emulator.stats()["create_requests"] == 4
