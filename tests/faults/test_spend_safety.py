"""Faults survived, counted at the emulator: kills, dropped connections, broker restart,
error storms, a smaller account limit, an exhausted account, and a poison message.

Every test publishes real jobs to RabbitMQ, runs real `tryon worker` processes against
PostgreSQL, and counts at the Kling emulator what reached the paid API. Each test
prints one line of figures (`FIGURES ...`) that the issue notes quote.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from typing import Any

import pytest

from harness import (
    Deployment,
    dead_letters,
    publish_jobs,
    wait_all_terminal,
    wait_until,
)
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.store import JobRecord


def figures(name: str, **values: object) -> None:
    print(f"FIGURES {name}: " + json.dumps(values, sort_keys=True))


def assert_one_task_per_job(emulator: EmulatorServer, job_ids: list[str]) -> dict[str, Any]:
    """At the API: every job has exactly one task, and no create was refused as a duplicate."""
    stats = emulator.stats()
    tasks = stats["tasks_by_external_id"]
    assert stats["duplicates"] == 0, stats["duplicates"]
    assert {job_id: tasks.get(job_id, 0) for job_id in job_ids} == dict.fromkeys(job_ids, 1)
    return stats


def states(records: dict[str, JobRecord]) -> Counter[str]:
    return Counter(str(r.state) for r in records.values())


@pytest.mark.slow
def test_kill_9_workers_during_submission(
    rabbit_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """kill -9 workers again and again over 200 jobs: all end, none lost, one create each."""
    deployment = rabbit_deployment
    deployment.env["TRYON_MAX_IN_FLIGHT"] = "8"
    # Slow creates widen the window between the POST and recording the task id.
    emulator.configure(
        concurrency_limit=8, task_duration=0.5, slow_rate=0.8, slow_seconds=0.4, seed=7
    )
    deployment.start_worker(concurrency=2, name="k0")
    deployment.start_worker(concurrency=2, name="k1")
    job_ids = publish_jobs(deployment.settings, 200, "kill")
    store = deployment.store()
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

    records = wait_all_terminal(store, job_ids, timeout=420, during=killer)
    assert states(records) == {"succeeded": 200}
    stats = assert_one_task_per_job(emulator, job_ids)
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
def test_dropped_connections_after_create_make_no_duplicates(
    rabbit_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """5% of creates make the task but drop the answer: each is found, never re-created."""
    deployment = rabbit_deployment
    emulator.configure(drop_rate=0.05, task_duration=0.3, seed=11)
    deployment.start_worker(concurrency=2)
    job_ids = publish_jobs(deployment.settings, 120, "drop")
    records = wait_all_terminal(deployment.store(), job_ids, timeout=300)
    assert states(records) == {"succeeded": 120}
    stats = assert_one_task_per_job(emulator, job_ids)
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
def test_rabbitmq_restart_mid_run_loses_nothing(
    rabbit_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """RabbitMQ is stopped and started in the middle of a run: every job still ends."""
    deployment = rabbit_deployment
    emulator.configure(task_duration=0.5)
    deployment.start_worker(concurrency=2)
    job_ids = publish_jobs(deployment.settings, 100, "restart")
    store = deployment.store()
    wait_until(
        lambda: len([j for j in job_ids if (r := store.get(j)) and r.terminal]) >= 15,
        120,
        what="a first part of the run",
    )
    done_before = len([j for j in job_ids if (r := store.get(j)) and r.terminal])
    rabbitmqctl("stop_app")
    time.sleep(3)
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup")
    records = wait_all_terminal(store, job_ids, timeout=360)
    assert states(records) == {"succeeded": 100}
    stats = assert_one_task_per_job(emulator, job_ids)
    assert all(w.alive() for w in deployment.workers)
    figures(
        "rabbitmq-restart",
        jobs=100,
        terminal_before_restart=done_before,
        lost=0,
        tasks=stats["creates"],
        duplicate_creates=stats["duplicates"],
    )


@pytest.mark.slow
def test_fault_storm_keeps_within_our_limit(
    rabbit_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """20% 5000, 20% 1302, slow answers; our limit 3 below the account's 5: never 1303."""
    deployment = rabbit_deployment
    deployment.env["TRYON_MAX_IN_FLIGHT"] = "3"
    emulator.configure(
        concurrency_limit=5,
        error_rate=0.2,
        throttle_rate=0.2,
        retry_after=1.0,
        slow_rate=0.2,
        slow_seconds=0.3,
        task_duration=0.5,
        seed=5,
    )
    deployment.start_worker(concurrency=2)
    job_ids = publish_jobs(deployment.settings, 60, "storm")
    records = wait_all_terminal(deployment.store(), job_ids, timeout=360)
    assert states(records) == {"succeeded": 60}
    stats = assert_one_task_per_job(emulator, job_ids)
    codes = stats["answers_by_code"]
    assert stats["peak_in_flight"] <= 3
    assert codes.get("1303", 0) == 0
    assert codes.get("5000", 0) > 0 and codes.get("1302", 0) > 0
    figures(
        "fault-storm",
        jobs=60,
        peak_in_flight=stats["peak_in_flight"],
        limit=3,
        answers_1303=codes.get("1303", 0),
        answers_5000=codes.get("5000", 0),
        answers_1302=codes.get("1302", 0),
        tasks=stats["creates"],
        duplicate_creates=stats["duplicates"],
    )


@pytest.mark.slow
def test_account_limit_below_ours_is_absorbed_by_backoff(
    rabbit_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """The account allows 2 while we think 5: 1303s are retried, every job still succeeds."""
    deployment = rabbit_deployment
    deployment.env["TRYON_MAX_IN_FLIGHT"] = "5"
    emulator.configure(concurrency_limit=2, task_duration=0.5)
    deployment.start_worker(concurrency=2)
    job_ids = publish_jobs(deployment.settings, 30, "limit")
    records = wait_all_terminal(deployment.store(), job_ids, timeout=300)
    assert states(records) == {"succeeded": 30}
    stats = assert_one_task_per_job(emulator, job_ids)
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
def test_exhausted_account_pauses_submissions_until_it_clears(
    rabbit_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """1102: submissions stop for all, no job fails, probes are rare; all finish after."""
    deployment = rabbit_deployment
    deployment.env["TRYON_MAX_IN_FLIGHT"] = "3"
    deployment.env["TRYON_ACCOUNT_PROBE_INTERVAL"] = "2"
    emulator.configure(account_error=1102, task_duration=0.3)
    deployment.start_worker(concurrency=2)
    job_ids = publish_jobs(deployment.settings, 12, "units")
    store = deployment.store()
    wait_until(lambda: store.current_pause() is not None, 30, what="the account pause")
    paused_at = time.monotonic()
    time.sleep(8)
    seconds_paused = time.monotonic() - paused_at
    counts = store.count_by_state()
    assert set(counts) <= {"queued", "submitting"}, counts
    assert counts.get("submitting", 0) <= 3
    during = emulator.stats()
    assert during["creates"] == 0
    # At most one probe per interval, plus the in-flight jobs that first met the 1102.
    assert during["create_requests"] <= 3 + seconds_paused / 2 + 3, during["create_requests"]
    emulator.configure(account_error=None)
    records = wait_all_terminal(store, job_ids, timeout=120)
    assert states(records) == {"succeeded": 12}
    assert store.current_pause() is None
    assert_one_task_per_job(emulator, job_ids)
    figures(
        "account-out-of-units",
        jobs=12,
        seconds_paused=round(seconds_paused, 1),
        create_requests_while_paused=during["create_requests"],
        failed=0,
        succeeded_after_clear=12,
    )


def test_poison_message_is_parked_with_reason_and_others_go_on(
    rabbit_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """A task message that raises every time is dead-lettered with why; jobs still run."""
    deployment = rabbit_deployment
    deployment.env["TRYON_TASK_FAILURE_RETRIES"] = "2"
    emulator.configure(task_duration=0.3)
    deployment.start_worker(concurrency=2)
    from kolors_tryon import create_app

    app = create_app(deployment.settings)
    # A producer bug: a job id that is a number makes the store query fail every time.
    app.send_task("tryon.submit", args=[12345])
    job_ids = publish_jobs(deployment.settings, 10, "poison")
    records = wait_all_terminal(deployment.store(), job_ids, timeout=120)
    assert states(records) == {"succeeded": 10}
    parked: list[tuple[bytes, dict[str, object]]] = []

    def poison_parked() -> bool:
        parked.extend(dead_letters(deployment.settings))
        return bool(parked)

    wait_until(poison_parked, 60, what="the poison message in the dead-letter queue")
    body, headers = parked[0]
    assert json.loads(body) == {"task": "tryon.submit", "args": [12345]}
    reason = str(headers["x-tryon-reason"])
    assert "tryon.submit raised" in reason
    worker_log = deployment.workers[0].log_text()
    assert worker_log.count("parking the message after 3 tries") == 1  # first try + 2 retries
    figures("poison", tries=3, parked=len(parked), other_jobs_succeeded=10)
