"""The error policy, code by code: what one submit run does with each answer of the API.

The pipeline core runs for real (job store on SQLite, Kling client over HTTP); the
emulator answers every create with the business code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import (
    TEST_ACCESS_KEY,
    TEST_API_KEY,
    TEST_SECRET_KEY,
    SettableClock,
    runtime_with_clock,
    sample_b64,
)
from kolors_tryon.config import Settings
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.jobs import validate_job
from kolors_tryon.pipeline import Runtime, submit_job
from kolors_tryon.store import JobState, NewJob

PAUSE = "pause"  # submissions stop for the account; the job waits, not failed
RETRY = "retry"  # run again later; the job waits
REJECT = "rejected"
FAIL = "failed"

POLICY = {
    1000: PAUSE,
    1001: PAUSE,
    1002: PAUSE,
    1304: PAUSE,
    1100: PAUSE,
    1101: PAUSE,
    1102: PAUSE,
    1003: PAUSE,  # after one re-mint: the clock or the keys are wrong, no job is
    1004: PAUSE,  # at fault, so submissions pause for the account
    1103: REJECT,
    1200: REJECT,
    1201: REJECT,
    1202: PAUSE,  # invalid method: the base URL is wrong, not the job
    1203: REJECT,
    1300: FAIL,
    1301: FAIL,
    1302: RETRY,
    1303: RETRY,
    5000: RETRY,
    5001: RETRY,
    5002: RETRY,
}


@pytest.fixture
def clock() -> SettableClock:
    """A clock the test moves forward."""
    return SettableClock()


@pytest.fixture
def runtime(tmp_path: Path, emulator: EmulatorServer, clock: SettableClock) -> Iterator[Runtime]:
    """A runtime on a fresh SQLite store with a settable clock, talking JWT to the emulator."""
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path,
            "kling_base_url": emulator.base_url,
            "kling_access_key": TEST_ACCESS_KEY,
            "kling_secret_key": TEST_SECRET_KEY,
            "retry_backoff_base": 1.0,
            "account_probe_interval": 30.0,
            "create_visibility_grace": 20.0,
        }
    )
    rt = runtime_with_clock(settings, clock)
    yield rt
    rt.close()


def claim_job(rt: Runtime, job_id: str) -> str:
    valid = validate_job(
        {
            "job_id": job_id,
            "human_image": sample_b64("human.jpg"),
            "cloth_image": sample_b64("cloth-red.png"),
        }
    )
    rt.store.intake.accept([NewJob(valid.job_id, body=valid.body.to_request())])
    (claim,) = rt.store.claims.next(5, lease_seconds=60)
    return claim.owner


@pytest.mark.parametrize(("code", "expected"), sorted(POLICY.items()))
def test_each_business_code_gets_its_policy(
    runtime: Runtime, emulator: EmulatorServer, code: int, expected: str
) -> None:
    """A create answered with `code` pauses, retries, rejects or fails the job as the table says."""
    emulator.configure(create_error=code)
    owner = claim_job(runtime, "job-1")
    step = submit_job(runtime, "job-1", owner)
    record = runtime.store.get("job-1")
    assert record is not None
    pause = runtime.store.account.current_pause()
    if expected == PAUSE:
        assert record.state is JobState.SUBMITTING and record.error is None
        assert pause is not None and pause.code == f"kling_{code}"
        assert step.again_in == pytest.approx(30.0)
    elif expected == RETRY:
        assert record.state is JobState.SUBMITTING and record.error is None
        assert pause is None
        assert step.again_in is not None and step.again_in >= 0.5
    else:
        assert record.state is JobState(expected)
        assert record.error is not None
        assert record.error.code == f"kling_{code}"
        assert step.dispatch  # the slot is free again
    creates = emulator.stats()["create_requests"]
    assert creates == (2 if code in (1003, 1004) else 1)  # a re-mint gets one more try


def test_ambiguous_create_is_looked_up_before_anything_is_resent(
    runtime: Runtime, emulator: EmulatorServer
) -> None:
    """After a dropped answer the next run finds the task by external id: no second create."""
    emulator.configure(drop_rate=1.0)
    owner = claim_job(runtime, "job-1")
    step = submit_job(runtime, "job-1", owner)
    assert step.again_in is not None
    emulator.configure(drop_rate=0.0)
    step = submit_job(runtime, "job-1", owner, waits=1)
    record = runtime.store.get("job-1")
    assert record is not None and record.state is JobState.SUBMITTED
    stats = emulator.stats()
    assert stats["create_requests"] == 1 and stats["creates"] == 1
    assert record.attempts == 1


def test_server_error_then_lookup_then_create(
    runtime: Runtime, emulator: EmulatorServer, clock: SettableClock
) -> None:
    """A 5000 on create may hide a task: "not found" is trusted only after the grace."""
    emulator.configure(create_error=5000)
    owner = claim_job(runtime, "job-1")
    first = submit_job(runtime, "job-1", owner)
    assert first.again_in is not None and first.again_in >= 20  # not before a task shows
    emulator.configure(create_error=None)
    queries_before = emulator.stats()["queries"]
    clock.now += 5  # too early: the lookup's "not found" proves nothing yet
    early = submit_job(runtime, "job-1", owner, waits=1)
    assert early.again_in is not None and early.again_in >= 14
    assert emulator.stats()["create_requests"] == 1
    clock.now += early.again_in
    submit_job(runtime, "job-1", owner, waits=2)
    stats = emulator.stats()
    assert stats["queries"] == queries_before + 2  # two lookups by external_task_id
    assert stats["creates"] == 1
    record = runtime.store.get("job-1")
    assert record is not None and record.state is JobState.SUBMITTED and record.attempts == 2


def test_paused_account_sends_one_probe_and_resumes(
    runtime: Runtime, emulator: EmulatorServer
) -> None:
    """1102 pauses; until the probe is due nothing is sent; a good probe clears the pause."""
    emulator.configure(create_error=1102)
    owner = claim_job(runtime, "job-1")
    submit_job(runtime, "job-1", owner)
    emulator.configure(create_error=None)
    waiting = submit_job(runtime, "job-1", owner, waits=1)
    assert waiting.again_in is not None and waiting.again_in > 20
    assert emulator.stats()["create_requests"] == 1  # nothing sent while paused
    pause = runtime.store.account.current_pause()
    assert pause is not None
    runtime.store.account.pause(pause.code, pause.message, retry_in=-1)  # the probe is due now
    resumed = submit_job(runtime, "job-1", owner, waits=2)
    assert resumed.dispatch
    assert runtime.store.account.current_pause() is None
    record = runtime.store.get("job-1")
    assert record is not None and record.state is JobState.SUBMITTED


def test_static_key_token_error_pauses_without_a_second_try(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    """A static key cannot be re-minted: 1004 pauses the account, the job keeps waiting."""
    settings = Settings.model_validate(
        {"data_dir": tmp_path, "kling_base_url": emulator.base_url, "kling_api_key": TEST_API_KEY}
    )
    rt = Runtime.from_settings(settings)
    rt.store.create_schema()
    emulator.configure(create_error=1004)
    owner = claim_job(rt, "job-1")
    submit_job(rt, "job-1", owner)
    record = rt.store.get("job-1")
    assert record is not None and record.state is JobState.SUBMITTING and record.error is None
    pause = rt.store.account.current_pause()
    assert pause is not None and "clock" in pause.message
    assert emulator.stats()["create_requests"] == 1
    rt.close()
