"""The pipeline on a pool, step by step (no worker): calls go to the job's account only,
a paused account's claim moves elsewhere, and an account removed from the configuration
fails the jobs that may have a task there with the reason (or moves the ones that cannot)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from harness import TEST_API_KEY, SettableClock, running_emulator, runtime_with_clock, sample_b64
from kolors_tryon.config import Settings
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.jobs import validate_job
from kolors_tryon.pipeline import Runtime, dispatch, submit_job, track_job
from kolors_tryon.store import JobState, NewJob
from kolors_tryon.store.tables import JobRow


@pytest.fixture
def b_emulator() -> Iterator[EmulatorServer]:
    with running_emulator(task_duration=60.0) as server:
        yield server


def pool_runtime(tmp: Path, clock: SettableClock, *accounts: tuple[str, str]) -> Runtime:
    """A runtime on SQLite whose pool is `accounts` ((name, base URL), 2 slots each)."""
    entries = [
        {"name": n, "base_url": url, "api_key": TEST_API_KEY, "max_in_flight": 2}
        for n, url in accounts
    ]
    settings = Settings.model_validate(
        {
            "data_dir": tmp,
            "kling_accounts": json.dumps(entries),
            "http_attempts": 1,
            "result_allow_private": True,
        }
    )
    return runtime_with_clock(settings, clock)


def queue(rt: Runtime, job_id: str, pin: str | None = None) -> None:
    valid = validate_job(
        {"job_id": job_id, "human_image": sample_b64("human.jpg"),
         "cloth_image": sample_b64("cloth-red.png")}
    )  # fmt: skip
    rt.store.intake.accept([NewJob(valid.job_id, body=valid.body.to_request(), account_pin=pin)])


def test_each_call_goes_to_the_job_account_only(
    tmp_path: Path, emulator: EmulatorServer, b_emulator: EmulatorServer
) -> None:
    """A job pinned to b is created, and looked up, at b's emulator; a never hears of it."""
    emulator.configure(task_duration=60.0)
    rt = pool_runtime(
        tmp_path, SettableClock(), ("a", emulator.base_url), ("b", b_emulator.base_url)
    )
    try:
        queue(rt, "pinned-b", pin="b")
        (claim,) = dispatch(rt)
        step = submit_job(rt, claim.job_id, claim.owner)
        assert step.note == "submitted"
        track_job(rt, "pinned-b", 0)
        assert b_emulator.stats()["tasks_by_external_id"] == {"pinned-b": 1}
        assert b_emulator.stats()["queries"] >= 1
        assert emulator.stats()["create_requests"] == emulator.stats()["queries"] == 0
    finally:
        rt.close()


def test_a_cleanly_refused_claim_moves_to_the_other_account(
    tmp_path: Path, emulator: EmulatorServer, b_emulator: EmulatorServer
) -> None:
    """a answers 1102: a pauses, the job leaves a and is created on b, once."""
    emulator.configure(create_error=1102)
    rt = pool_runtime(
        tmp_path, SettableClock(), ("a", emulator.base_url), ("b", b_emulator.base_url)
    )
    try:
        queue(rt, "j")
        (claim,) = rt.store.pool.claim(
            [s for s in rt.pool_slots() if s.name == "a"], lease_seconds=60
        )
        step = submit_job(rt, claim.job_id, claim.owner)
        assert step.dispatch and "moved off" in (step.note or "")
        assert rt.store.pool.current_pause("a") is not None
        (again,) = dispatch(rt)
        assert rt.store.pool.account_of("j") == "b"
        assert submit_job(rt, again.job_id, again.owner).note == "submitted"
        assert b_emulator.stats()["tasks_by_external_id"] == {"j": 1}
        assert emulator.stats()["creates"] == 0
    finally:
        rt.close()


def test_an_account_removed_from_the_configuration(
    tmp_path: Path, emulator: EmulatorServer, b_emulator: EmulatorServer
) -> None:
    """Its submitted job fails with `account_removed`; its unsent claim moves to b."""
    clock = SettableClock()
    both = pool_runtime(tmp_path, clock, ("a", emulator.base_url), ("b", b_emulator.base_url))
    try:
        queue(both, "sent", pin="a")
        queue(both, "unsent")
        claims = {c.job_id: c for c in dispatch(both)}
        assert submit_job(both, "sent", claims["sent"].owner).note == "submitted"
        with both.store.db.transaction() as (s, _):
            s.execute(update(JobRow).where(JobRow.job_id == "unsent").values(account="a"))
    finally:
        both.close()
    # The operator removes a (and its credentials) and restarts.
    only_b = pool_runtime(tmp_path, clock, ("b", b_emulator.base_url))
    try:
        step = track_job(only_b, "sent", 0)
        record = only_b.store.get("sent")
        assert record is not None and record.state is JobState.FAILED, step.note
        assert record.error is not None and record.error.code == "account_removed"
        assert "no longer in TRYON_KLING_ACCOUNTS" in record.error.message
        moved = submit_job(only_b, "unsent", claims["unsent"].owner)
        assert "moved off removed account a" in (moved.note or "")
        (again,) = dispatch(only_b)
        assert submit_job(only_b, again.job_id, again.owner).note == "submitted"
        assert only_b.store.pool.account_of("unsent") == "b"
    finally:
        only_b.close()
