"""Claims held by a worker: renewed by its heartbeat, handed back, taken over when lapsed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import SettableClock, fresh_database
from kolors_tryon.store import CreatePlan, JobStore, NewJob

BODY = {"human_image": "aGk=", "cloth_image": "aGk=", "external_task_id": "x"}
LEASE = 10.0
LONG_LEASE = 180.0


@pytest.fixture(params=["sqlite", "postgresql"])
def clocked(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[JobStore, SettableClock]]:
    """A fresh store on each database, keeping time by a clock the test moves."""
    clock = SettableClock()
    if request.param == "sqlite":
        store = JobStore.from_url(f"sqlite:///{tmp_path / 'jobs.sqlite'}", clock=clock)
        store.create_schema()
        yield store, clock
        store.dispose()
        return
    with fresh_database() as url:
        store = JobStore.from_url(url, clock=clock)
        store.create_schema()
        yield store, clock
        store.dispose()


def claim_as(store: JobStore, *owners: str) -> None:
    """Queue one job per owner (job ids j0, j1...) and claim them under those owners."""
    for i in range(len(owners)):
        store.intake.accept([NewJob(f"j{i}", body=BODY)])
    given = iter(owners)
    claims = store.claims.next(len(owners), lease_seconds=LEASE, new_owner=lambda: next(given))
    assert [c.owner for c in claims] == list(owners)


def test_heartbeat_keeps_its_holders_claims_and_no_one_elses(
    clocked: tuple[JobStore, SettableClock],
) -> None:
    """A holder's heartbeat renews its claims only: another holder's lapse and are taken."""
    store, clock = clocked
    claim_as(store, "hA.1", "hB.2", "hAx.3")
    for _ in range(5):  # 20 s of heartbeats every 4 s, by hA only
        clock.advance(4)
        store.claims.renew("hA", seconds=LEASE, fresh_for=LONG_LEASE)
    # hB stopped beating and hAx only looks like hA: both ran out; hA's claim did not.
    assert store.claims.expired() == ["j1", "j2"]


def test_a_claim_whose_message_was_lost_still_runs_out_while_its_holder_lives(
    clocked: tuple[JobStore, SettableClock],
) -> None:
    """The heartbeat renews a claim only within the long lease of its last write."""
    store, clock = clocked
    claim_as(store, "hA.1")
    for _ in range(int(LONG_LEASE / 4) + 4):
        clock.advance(4)
        store.claims.renew("hA", seconds=LEASE, fresh_for=LONG_LEASE)
    assert store.claims.expired() == ["j0"]


def test_hand_back_takes_released_and_lapsed_claims_never_one_mid_attempt(
    clocked: tuple[JobStore, SettableClock],
) -> None:
    """A released holder's claims and lapsed ones get new owners; an open attempt window
    and a live claim of another holder are left alone; old owners are shut out."""
    store, clock = clocked
    claim_as(store, "hA.1", "hA.2", "hB.3", "hC.4")
    assert store.submits.record_intent("j1", "hA.2", window=60)  # hA.2 may be sending its create
    clock.advance(LEASE / 2)
    store.claims.renew("hC", seconds=LEASE, fresh_for=LONG_LEASE)
    clock.advance(LEASE / 2 + 1)  # hB's lease ran out; hC's was renewed
    store.claims.renew("hC", seconds=LEASE, fresh_for=LONG_LEASE)
    owners = iter(["hD.a", "hD.b", "hD.c"])
    taken = store.claims.take_over_all(lambda: next(owners), lease_seconds=LEASE, released="hA")
    assert [(c.job_id, c.owner) for c in taken] == [("j0", "hD.a"), ("j2", "hD.b")]
    assert store.submits.enter("j0", "hA.1", window=30, grace=5) is None
    assert store.submits.enter("j2", "hB.3", window=30, grace=5) is None
    assert store.submits.enter("j0", "hD.a", window=30, grace=5) is not None
    assert store.get("j1") is not None and store.get("j3") is not None
    assert store.claims.take_over_all(lambda: "hE.z", lease_seconds=LEASE) == []


def test_a_claim_whose_run_died_mid_attempt_runs_out_with_its_window(
    clocked: tuple[JobStore, SettableClock],
) -> None:
    """A run that recorded its intent and never left: renewed no more once its window
    closed, so it is taken over then (and its job looked up), not after the long lease."""
    store, clock = clocked
    claim_as(store, "hA.1")
    assert store.submits.record_intent("j0", "hA.1", window=30)
    for _ in range(8):  # 32 s of heartbeats: the window closed at 30 s
        clock.advance(4)
        store.claims.renew("hA", seconds=LEASE, fresh_for=LONG_LEASE)
    assert store.claims.expired() == ["j0"]
    assert [c.owner for c in store.claims.take_over_all(lambda: "hB.1", lease_seconds=LEASE)] == [
        "hB.1"
    ]
    plan = store.submits.enter("j0", "hB.1", window=30, grace=5)
    assert isinstance(plan, CreatePlan) and plan.maybe_created  # looked up before a create
