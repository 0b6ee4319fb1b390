"""Kling's callbacks end jobs the moment Kling reports them; polling is the safety net.

Real `tryon web` and `tryon worker` processes, RabbitMQ, PostgreSQL and the emulator,
which posts its callbacks over HTTP to the URL each create carried. Figures are
counted at the emulator (API calls) and read from the records (delays).
"""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from harness import (
    TEST_API_KEY,
    figures,
    free_port,
    publish_jobs,
    rabbit_deployment_on,
    running_emulator,
    wait_all_terminal,
    wait_until,
)
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.kling import KlingClient, StaticKeyAuth
from kolors_tryon.store import JobRecord
from kolors_tryon.store.records import unix_seconds
from web_service import callback_receiver, web_process

LIMIT = 5
SECRET = "callback-secret-for-fault-tests-0123"
# The service's own polling defaults, not the tests' fast ones: the comparison is the
# figure users get.
PRODUCTION_POLLING = {"TRYON_TRACK_FIRST_DELAY": "10", "TRYON_TRACK_INTERVAL_MAX": "60"}


def task_end_delays(emulator: EmulatorServer, records: dict[str, JobRecord]) -> list[float]:
    """Seconds from each task's end at the emulator to its job's terminal record."""
    with KlingClient(emulator.base_url, StaticKeyAuth(TEST_API_KEY)) as client:
        ended = {t.external_task_id: t.updated_at for t in client.list(page_size=500)}
    delays = []
    for job_id, record in records.items():
        finished, end_ms = unix_seconds(record.finished_at), ended.get(job_id)
        assert finished is not None and end_ms is not None, job_id
        delays.append(finished - end_ms / 1000)
    return delays


def run_backlog(tmp: Path, *, callbacks: bool, jobs: int = 30) -> dict[str, Any]:
    """`jobs` jobs of about 5 s at limit 5; returns the run's figures."""
    tmp.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        emulator = stack.enter_context(running_emulator(task_duration=5.0))
        emulator.configure(concurrency_limit=LIMIT)
        deployment = stack.enter_context(rabbit_deployment_on(tmp, emulator))
        deployment.env.update(PRODUCTION_POLLING)
        deployment.env["TRYON_MAX_IN_FLIGHT"] = str(LIMIT)
        if callbacks:
            stack.enter_context(callback_receiver(deployment, SECRET))
        deployment.start_worker(concurrency=2)
        store = deployment.store()
        job_ids = publish_jobs(deployment.settings, jobs, "cb" if callbacks else "poll")
        records = wait_all_terminal(store, job_ids, timeout=400)
        assert {str(r.state) for r in records.values()} == {"succeeded"}
        stats = emulator.stats()
        delays = task_end_delays(emulator, records)
        submitted = [unix_seconds(r.submitted_at) or 0.0 for r in records.values()]
        finished = [unix_seconds(r.finished_at) or 0.0 for r in records.values()]
        makespan = max(finished) - min(submitted)
        return {
            "jobs": jobs,
            "tasks": stats["creates"],
            "duplicates": stats["duplicates"],
            "calls_per_job": round(
                (stats["create_requests"] + stats["queries"] + stats["lists"]) / jobs, 3
            ),
            "queries": stats["queries"],
            "answers_1303": stats["answers_by_code"].get("1303", 0),
            "delay_p50_s": round(statistics.median(delays), 3),
            "delay_max_s": round(max(delays), 3),
            "makespan_s": round(makespan, 1),
            "slot_utilization": round(jobs * 5.0 / (LIMIT * makespan), 3),
        }


@pytest.mark.slow
@pytest.mark.serial
def test_callbacks_end_jobs_at_once_with_one_call_per_job(tmp_path: Path) -> None:
    """30 jobs of 5 s, limit 5: with callbacks about one API call per job and < 1 s delay.

    The two runs go side by side, each with its own emulator and deployment (their tasks
    are waits at the emulator: they hardly compete for the machine)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        callbacks_run = pool.submit(run_backlog, tmp_path / "callbacks", callbacks=True)
        polling_run = pool.submit(run_backlog, tmp_path / "polling", callbacks=False)
        with_callbacks, polling_only = callbacks_run.result(), polling_run.result()
    figures("callbacks-vs-polling", callbacks=with_callbacks, polling=polling_only)
    for run in (with_callbacks, polling_only):
        assert run["tasks"] == run["jobs"] and run["duplicates"] == 0
    assert with_callbacks["calls_per_job"] <= 1.2
    assert with_callbacks["delay_p50_s"] < 1.0
    assert with_callbacks["delay_max_s"] < 3.0  # a shared CI machine may stall a moment
    # Polling holds each slot until the next query: the callbacks run is the faster one.
    assert with_callbacks["delay_p50_s"] < polling_only["delay_p50_s"]
    assert with_callbacks["makespan_s"] < polling_only["makespan_s"]


@pytest.mark.slow
def test_receiver_down_for_the_first_half_every_job_still_ends_once(tmp_path: Path) -> None:
    """No `tryon web` for the first half: polling ends those jobs; none is created twice."""
    with ExitStack() as stack:
        emulator = stack.enter_context(running_emulator(task_duration=2.0))
        emulator.configure(concurrency_limit=LIMIT)
        deployment = stack.enter_context(rabbit_deployment_on(tmp_path, emulator))
        port = free_port()
        deployment.env.update(
            {
                "TRYON_MAX_IN_FLIGHT": str(LIMIT),
                "TRYON_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "TRYON_CALLBACK_SECRET": SECRET,
                # The safety net, short for the test: a callback is overdue after 3 s.
                "TRYON_CALLBACK_OVERDUE_AFTER": "3",
                "TRYON_CALLBACK_POLL_MAX": "3",
            }
        )
        deployment.start_worker(concurrency=2)
        store = deployment.store()
        job_ids = publish_jobs(deployment.settings, 20, "down")

        def half_done() -> bool:
            return sum(1 for j in job_ids if (r := store.get(j)) and r.terminal) >= 10

        wait_until(half_done, 180, what="half of the jobs to end by polling")
        callbacks_lost = emulator.stats()["callbacks_failed"]
        stack.enter_context(web_process(deployment.env, tmp_path / "web.log", port))
        records = wait_all_terminal(store, job_ids, timeout=180)
        stats = emulator.stats()
    assert {str(r.state) for r in records.values()} == {"succeeded"}
    assert stats["creates"] == 20 and stats["duplicates"] == 0
    assert set(stats["tasks_by_external_id"].values()) == {1}
    assert callbacks_lost > 0  # the receiver really was away
    figures(
        "callback-receiver-down",
        jobs=20,
        callbacks_failed_while_down=callbacks_lost,
        callbacks_sent=stats["callbacks_sent"],
        queries=stats["queries"],
        tasks=stats["creates"],
    )
