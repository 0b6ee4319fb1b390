"""Faults survived, counted at the emulator: kills, dropped connections, broker restart,
error storms, a smaller account limit, an exhausted account, and a poison message.

Every test publishes real jobs to RabbitMQ, runs real `tryon worker` processes against
PostgreSQL, and counts at the Kling emulator what reached the paid API. Each test
prints one line of figures (`FIGURES ...`) that the issue notes quote. The scaffold is
`harness.faults.FaultRun`: a test here is its scenario (given), its fault (when) and
its counts (then).
"""

from __future__ import annotations

import json
import random
import subprocess
import time

import pytest

from harness import FaultRun, dead_letters, figures, wait_until


@pytest.mark.slow
def test_kill_9_workers_during_submission(fault_run: FaultRun) -> None:
    """kill -9 workers again and again over 200 jobs: all end, none lost, one create each."""
    # Given: 8 slots, and slow creates that widen the window between the POST and
    # recording the task id; two workers.
    run = fault_run.given(
        workers=("k0", "k1"),
        max_in_flight=8,
        concurrency_limit=8,
        task_duration=0.5,
        slow_rate=0.8,
        slow_seconds=0.4,
        seed=7,
    )
    deployment = run.deployment
    rng = random.Random(42)
    kills = 0
    pool_kills: list[str] = []
    next_kill = time.monotonic() + 3

    def killer() -> None:
        nonlocal kills, next_kill
        if kills >= 10 or time.monotonic() < next_kill:
            return
        alive = [w for w in deployment.workers if w.alive()]
        victim = rng.choice(alive)
        kills += 1
        # Every third kill takes one pool process only (Celery sees WorkerLostError and
        # requeues); the others take the whole worker (RabbitMQ requeues on disconnect).
        if kills % 3 == 0 and victim.kill_pool_child():
            pool_kills.append(victim.name)
        else:
            victim.kill()
            deployment.start_worker(concurrency=2, name=f"k{kills + 1}")
        next_kill = time.monotonic() + rng.uniform(2, 5)

    # When: 200 jobs, and a kill -9 every 2 to 5 s, ten in all.
    run.publish(200, "kill")
    records = run.wait_terminal(timeout=420, during=killer)

    # Then: every job succeeded with one task at the API, never over 8 in flight.
    assert run.states() == {"succeeded": 200}
    stats = run.assert_one_task_per_job()
    retried = sum(1 for r in records.values() if r.attempts > 1)
    # Jobs whose worker died after the POST: found by external_task_id, not sent again.
    adopted = sum(w.log_text().count("adopting Kling task") for w in deployment.workers)
    assert kills >= 5
    figures(
        "kill-9",
        jobs=200,
        kills=kills,
        lost=0,
        succeeded=200,
        create_requests=stats["create_requests"],
        tasks=stats["creates"],
        duplicate_creates=stats["duplicates"],
        jobs_with_more_than_one_post=retried,
        adopted_after_kill=adopted,
        pool_process_kills=len(pool_kills),
        peak_in_flight=stats["peak_in_flight"],
    )
    assert pool_kills  # the pool-process path was exercised too
    assert stats["peak_in_flight"] <= 8


@pytest.mark.slow
def test_dropped_connections_after_create_make_no_duplicates(fault_run: FaultRun) -> None:
    """5% of creates make the task but drop the answer: each is found, never re-created."""
    run = fault_run.given(drop_rate=0.05, task_duration=0.3, seed=11)

    run.publish(120, "drop")
    run.wait_terminal(timeout=300)

    assert run.states() == {"succeeded": 120}
    stats = run.assert_one_task_per_job()
    dropped = stats["answers_by_code"].get("dropped", 0)
    assert dropped > 0
    figures(
        "dropped-connections",
        jobs=120,
        dropped_answers=dropped,
        create_requests=stats["create_requests"],
        tasks=stats["creates"],
        duplicate_creates=stats["duplicates"],
    )


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.mark.slow
# Stops the machine's RabbitMQ: every other test running beside it would fail.
@pytest.mark.serial
def test_rabbitmq_restart_mid_run_loses_nothing(fault_run: FaultRun) -> None:
    """RabbitMQ is stopped and started in the middle of a run: every job still ends."""
    run = fault_run.given(task_duration=0.5)

    run.publish(100, "restart")
    wait_until(lambda: run.terminal_count() >= 15, 120, what="a first part of the run")
    done_before = run.terminal_count()
    rabbitmqctl("stop_app")
    time.sleep(3)
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup")
    run.wait_terminal(timeout=360)

    assert run.states() == {"succeeded": 100}
    stats = run.assert_one_task_per_job()
    assert all(w.alive() for w in run.deployment.workers)
    figures(
        "rabbitmq-restart",
        jobs=100,
        terminal_before_restart=done_before,
        lost=0,
        tasks=stats["creates"],
        duplicate_creates=stats["duplicates"],
    )


@pytest.mark.slow
def test_fault_storm_keeps_within_our_limit(fault_run: FaultRun) -> None:
    """20% 5000, 20% 1302, slow answers; our limit 3 below the account's 5: never 1303."""
    run = fault_run.given(
        max_in_flight=3,
        concurrency_limit=5,
        error_rate=0.2,
        throttle_rate=0.2,
        retry_after=1.0,
        slow_rate=0.2,
        slow_seconds=0.3,
        task_duration=0.5,
        seed=5,
    )

    run.publish(30, "storm")
    run.wait_terminal(timeout=360)

    assert run.states() == {"succeeded": 30}
    stats = run.assert_one_task_per_job()
    codes = stats["answers_by_code"]
    assert stats["peak_in_flight"] <= 3
    assert codes.get("1303", 0) == 0
    assert codes.get("5000", 0) > 0 and codes.get("1302", 0) > 0
    figures(
        "fault-storm",
        jobs=30,
        peak_in_flight=stats["peak_in_flight"],
        limit=3,
        answers_1303=codes.get("1303", 0),
        answers_5000=codes.get("5000", 0),
        answers_1302=codes.get("1302", 0),
        tasks=stats["creates"],
        duplicate_creates=stats["duplicates"],
    )


@pytest.mark.slow
def test_account_limit_below_ours_is_absorbed_by_backoff(fault_run: FaultRun) -> None:
    """The account allows 2 while we think 5: 1303s are retried, every job still succeeds."""
    run = fault_run.given(max_in_flight=5, concurrency_limit=2, task_duration=0.5)

    run.publish(30, "limit")
    records = run.wait_terminal(timeout=300)

    assert run.states() == {"succeeded": 30}
    stats = run.assert_one_task_per_job()
    busy = stats["answers_by_code"].get("1303", 0)
    assert busy > 0
    assert all(r.error is None for r in records.values())
    figures(
        "account-limit-below-ours",
        jobs=30,
        answers_1303=busy,
        create_requests=stats["create_requests"],
        tasks=stats["creates"],
        peak_in_flight=stats["peak_in_flight"],
    )


@pytest.mark.slow
def test_exhausted_account_pauses_submissions_until_it_clears(fault_run: FaultRun) -> None:
    """1102: submissions stop for all, no job fails, probes are rare; all finish after."""
    run = fault_run.given(
        max_in_flight=3,
        env={"TRYON_ACCOUNT_PROBE_INTERVAL": "2"},
        account_error=1102,
        task_duration=0.3,
    )

    # When the account is out of units, for 8 s of the run:
    run.publish(12, "units")
    store = run.store
    wait_until(lambda: store.account.current_pause() is not None, 30, what="the account pause")
    paused_at = time.monotonic()
    time.sleep(8)
    seconds_paused = time.monotonic() - paused_at

    # Then nothing moved past submitting and nothing was created,
    counts = store.jobs.count_by_state()
    assert set(counts) <= {"queued", "submitting"}, counts
    assert counts.get("submitting", 0) <= 3
    during = run.emulator.stats()
    assert during["creates"] == 0
    # At most one probe per interval, plus the in-flight jobs that first met the 1102.
    assert during["create_requests"] <= 3 + seconds_paused / 2 + 3, during["create_requests"]

    # and when the account has units again, every job ends with one task.
    run.emulator.configure(account_error=None)
    run.wait_terminal(timeout=120)
    assert run.states() == {"succeeded": 12}
    assert store.account.current_pause() is None
    run.assert_one_task_per_job()
    figures(
        "account-out-of-units",
        jobs=12,
        seconds_paused=round(seconds_paused, 1),
        create_requests_while_paused=during["create_requests"],
        failed=0,
        succeeded_after_clear=12,
    )


def test_poison_message_is_parked_with_reason_and_others_go_on(fault_run: FaultRun) -> None:
    """A task message that raises every time is dead-lettered with why; jobs still run."""
    from kolors_tryon import create_app
    from kolors_tryon.config.task_names import TaskName

    run = fault_run.given(env={"TRYON_TASK_FAILURE_RETRIES": "2"}, task_duration=0.3)
    settings = run.deployment.settings

    # A producer bug: a job id that is a number makes the store query fail every time.
    create_app(settings).send_task(TaskName.SUBMIT, args=[12345])
    run.publish(10, "poison")
    run.wait_terminal(timeout=120)

    assert run.states() == {"succeeded": 10}
    parked: list[tuple[bytes, dict[str, object]]] = []

    def poison_parked() -> bool:
        parked.extend(dead_letters(settings))
        return bool(parked)

    wait_until(poison_parked, 60, what="the poison message in the dead-letter queue")
    body, headers = parked[0]
    # What operators see in the dead-letter queue: the name on the wire, as a literal.
    assert json.loads(body) == {"task": "tryon.submit", "args": [12345]}
    reason = str(headers["x-tryon-reason"])
    assert "tryon.submit raised" in reason
    worker_log = run.deployment.workers[0].log_text()
    assert worker_log.count("parking the message after 3 tries") == 1  # first try + 2 retries
    figures("poison", tries=3, parked=len(parked), other_jobs_succeeded=10)
