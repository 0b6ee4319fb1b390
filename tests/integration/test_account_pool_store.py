"""The pool of accounts in the store: slots per account, pins, models, pauses, budgets,
moving a job off a paused account, and the migration that puts old jobs on `default`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from harness import fresh_database
from integration.schema_434ca07 import JOBS as OLD_JOBS
from integration.schema_434ca07 import METADATA as OLD_METADATA
from kolors_tryon.store import JobState, JobStore, NewJob, make_engine
from kolors_tryon.store.accounts import AccountSlots
from kolors_tryon.store.migrate import upgrade_schema
from kolors_tryon.store.queries import JOBS
from kolors_tryon.store.tables import JobRow

BODY = {"human_image": "h", "cloth_image": "c"}
A, B = AccountSlots("a", 2), AccountSlots("b", 3)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """A fresh store on each database, with pause rows for accounts a and b."""
    if request.param == "sqlite":
        built = JobStore.from_url(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
        built.create_schema()
        built.pool.ensure_rows(["a", "b"])
        yield built
        built.dispose()
        return
    with fresh_database() as url:
        built = JobStore.from_url(url)
        built.create_schema()
        built.pool.ensure_rows(["a", "b"])
        yield built
        built.dispose()


def queue(store: JobStore, *ids: str, pin: str | None = None, model: str | None = None) -> None:
    for job_id in ids:
        store.intake.accept([NewJob(job_id, body=BODY, account_pin=pin, model_name=model)])


def accounts(store: JobStore) -> Counter[str | None]:
    with store.db.transaction() as (s, _):
        return Counter(s.scalars(select(JobRow.account).where(JobRow.state != "queued")))


def test_each_account_gets_its_own_limit(store: JobStore) -> None:
    """Limits 2 and 3: five claims, two on a and three on b; then none until one ends."""
    queue(store, *[f"j{i}" for i in range(8)])
    claims = store.pool.claim([A, B], lease_seconds=60)
    assert len(claims) == 5
    assert accounts(store) == {"a": 2, "b": 3}
    assert store.pool.claim([A, B], lease_seconds=60) == []
    store.tracking.finish(claims[0].job_id, JobState.FAILED, error_code="x", error_message="x")
    assert len(store.pool.claim([A, B], lease_seconds=60)) == 1


def test_least_loaded_by_weight_first(store: JobStore) -> None:
    """Equal limits, weight 3 against 1: b gets three jobs for a's one."""
    queue(store, *[f"j{i}" for i in range(4)])
    pool = [AccountSlots("a", 10, weight=1), AccountSlots("b", 10, weight=3)]
    assert len(store.pool.claim(pool, lease_seconds=60)) == 4
    assert accounts(store) == {"b": 3, "a": 1}


def test_a_pinned_job_waits_for_its_account_and_others_pass_it(store: JobStore) -> None:
    """A job pinned to a full account waits; the job behind it goes to the free one."""
    queue(store, "p1", "p2", "p3", pin="a")
    queue(store, "free")
    store.pool.claim([A, B], lease_seconds=60)
    with store.db.transaction() as (s, _):
        rows = dict(s.execute(select(JobRow.job_id, JobRow.account)).all())
    assert rows == {"p1": "a", "p2": "a", "p3": None, "free": "b"}


def test_a_model_goes_only_to_an_account_that_runs_it(store: JobStore) -> None:
    """An account limited to v1-5 never gets a v1 job."""
    queue(store, "v1", model="kolors-virtual-try-on-v1")
    only_v15 = AccountSlots("a", 5, models=("kolors-virtual-try-on-v1-5",))
    assert store.pool.claim([only_v15], lease_seconds=60) == []
    assert len(store.pool.claim([only_v15, B], lease_seconds=60)) == 1
    assert accounts(store) == {"b": 1}


def test_a_paused_account_gets_only_its_probe_and_the_others_go_on(store: JobStore) -> None:
    """Account a paused: nothing for a until the probe is due, then one job; b fills."""
    queue(store, *[f"j{i}" for i in range(10)])
    assert store.pool.pause("a", "kling_1102", "out of units", retry_in=10**9)
    assert not store.pool.pause("a", "kling_1102", "out of units", retry_in=10**9)
    store.pool.claim([A, B], lease_seconds=60)
    assert accounts(store) == {"b": 3}
    store.pool.pause("a", "kling_1102", "out of units", retry_in=-1)  # the probe is due
    store.pool.claim([A, B], lease_seconds=60)
    assert accounts(store) == {"b": 3, "a": 1}
    assert store.pool.current_pause("b") is None
    assert store.account.current_pause() is None  # the single account's row is untouched
    assert store.pool.take_probe("a", next_in=10**9)
    assert store.pool.clear_pause("a")


def test_a_spent_daily_budget_stops_the_account_until_the_next_day(store: JobStore) -> None:
    """Two units a day and two spent today: no claim on a; with three, one more."""
    queue(store, "done1", "done2")
    store.pool.claim([AccountSlots("a", 5, daily_units=2)], lease_seconds=60)
    now = store.now()
    with store.db.transaction() as (s, _):
        s.execute(
            update(JobRow)
            .where(JobRow.job_id.in_(["done1", "done2"]))
            .values(state="succeeded", final_unit_deduction="1", finished_at=now)
        )
    queue(store, "next")
    assert store.pool.claim([AccountSlots("a", 5, daily_units=2)], lease_seconds=60) == []
    (usage,) = store.pool.usage(["a"])
    assert (usage.units_today, usage.units_spent, usage.created) == (2.0, 2.0, 0)
    assert len(store.pool.claim([AccountSlots("a", 5, daily_units=3)], lease_seconds=60)) == 1


def test_a_job_moved_off_a_paused_account_goes_to_another_once(store: JobStore) -> None:
    """`rehome` frees a cleanly refused claim; the next claim gives it to b, with no event."""
    queue(store, "j")
    (claim,) = store.pool.claim([A], lease_seconds=60)
    assert store.pool.rehome("j", claim.owner)
    assert not store.pool.rehome("j", claim.owner)  # the claim is gone
    (again,) = store.pool.claim([B], lease_seconds=60)
    assert again.job_id == "j" and again.record is None
    assert store.pool.account_of("j") == "b"


def test_an_unresolved_or_pinned_job_is_never_moved(store: JobStore) -> None:
    """A create that may exist keeps the job on its account; so does a pin."""
    queue(store, "maybe")
    queue(store, "pinned", pin="a")
    claims = {c.job_id: c.owner for c in store.pool.claim([A], lease_seconds=60)}
    with store.db.transaction() as (s, now):
        s.execute(update(JobRow).where(JobRow.job_id == "maybe").values(unresolved_until=now))
    assert not store.pool.rehome("maybe", claims["maybe"])
    assert not store.pool.rehome("pinned", claims["pinned"])


def test_migration_0010_puts_existing_jobs_on_default(tmp_path: Path) -> None:
    """Jobs recorded before the pool (a store of 434ca07, revision 0001) are on account
    `default` after the upgrade to head."""
    engine = make_engine(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    OLD_METADATA.create_all(engine)
    with engine.begin() as connection:
        for job_id, state in (("old-done", "succeeded"), ("old-queued", "queued")):
            connection.execute(
                insert(OLD_JOBS).values(job_id=job_id, state=state, created_at=1.0, updated_at=1.0)
            )
    upgrade_schema(engine)
    with engine.connect() as connection:
        rows = dict(connection.execute(select(JOBS.c.job_id, JOBS.c.account)).all())
    assert rows == {"old-done": "default", "old-queued": "default"}
    store = JobStore(engine)
    assert store.pool.account_of("old-done") == "default"
    engine.dispose()


def test_an_account_that_answered_1303_gets_no_claim_while_it_backs_off(store: JobStore) -> None:
    """After `back_off`, a's free slots are not used; b's are; a's return after the wait."""
    queue(store, *[f"j{i}" for i in range(4)])
    store.pool.back_off("a", 10**9)
    store.pool.claim([A, B], lease_seconds=60)
    assert accounts(store) == {"b": 3}
    store.pool.back_off("a", -1)
    store.pool.claim([A, B], lease_seconds=60)
    assert accounts(store) == {"b": 3, "a": 1}
