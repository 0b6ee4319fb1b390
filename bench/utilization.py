"""Paid-slot utilization: how much of the account's capacity becomes results.

A backlog of jobs of about `duration` seconds on an account limited to 5 tasks at a
time, with Kling's callbacks (TRYON_PUBLIC_URL pointing at a `tryon web` process) and
with polling only (the service's own polling defaults, as a deployment gets them).
Figures: utilization, the sum of task durations at the emulator divided by
(limit x makespan), the makespan running from the first enqueue to the last job's
terminal record; the 1303 answers; API calls per job (creates + queries + lists); and
the delay from a task's end at the emulator to its job's terminal record.

Baselines: the ideal makespan (backlog x duration / limit), and a naive client that
runs `limit` threads, each creating a task and polling it every second.

The three runs go side by side, each on its own emulator (its own account), to keep
`make bench` short; they are light (a few calls per second each), so they hardly
disturb each other.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import deployment_on, percentile, plot, write_result
from harness import (
    TEST_API_KEY,
    publish_jobs,
    running_emulator,
    sample_b64,
    wait_all_terminal,
)
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.kling import ConcurrencyLimitError, KlingClient, KlingTask, StaticKeyAuth
from kolors_tryon.store.records import unix_seconds
from web_service import callback_receiver

NAME = "utilization"
LIMIT = 5
SECRET = "callback-secret-for-the-benchmarks-0123"
_SCHEMA_LOCK = threading.Lock()
TARGETS = {"utilization": 0.95, "answers_1303": 0, "calls_per_job": 1.2, "delay_p50_s": 1.0}


@dataclass(frozen=True)
class Sizes:
    """The backlog and the duration of each task at the emulator."""

    jobs: int
    duration: float


FULL = Sizes(jobs=60, duration=10.0)
QUICK = Sizes(jobs=10, duration=2.0)
TINY = Sizes(jobs=5, duration=1.0)


def ended_tasks(emulator: EmulatorServer) -> dict[str, KlingTask]:
    """Every task at the emulator by external id, read back with one list call."""
    with KlingClient(emulator.base_url, StaticKeyAuth(TEST_API_KEY)) as client:
        return {t.external_task_id: t for t in client.list(page_size=500) if t.external_task_id}


def figures_of(
    emulator: EmulatorServer,
    sizes: Sizes,
    started: float,
    finished: dict[str, float],
) -> dict[str, Any]:
    """The run's figures from the emulator's tasks and counters and the end times seen."""
    stats = emulator.stats()
    tasks = ended_tasks(emulator)
    busy = sum(((t.updated_at or 0) - (t.created_at or 0)) / 1000 for t in tasks.values())
    makespan = max(finished.values()) - started
    delays = [at - (tasks[job_id].updated_at or 0) / 1000 for job_id, at in finished.items()]
    ideal = sizes.jobs * sizes.duration / LIMIT
    calls = stats["create_requests"] + stats["queries"] + stats["lists"]
    return {
        "jobs": sizes.jobs,
        "tasks": stats["creates"],
        "utilization": round(busy / (LIMIT * makespan), 3),
        "makespan_s": round(makespan, 1),
        "ideal_over_makespan": round(ideal / makespan, 3),
        "answers_1303": stats["answers_by_code"].get("1303", 0),
        "calls_per_job": round(calls / sizes.jobs, 2),
        "delay_p50_s": round(statistics.median(delays), 3),
        "delay_p99_s": round(percentile(delays, 99), 3),
        "delay_max_s": round(max(delays), 3),
        "peak_in_flight": stats["peak_in_flight"],
    }


def service_backlog(tmp: Path, sizes: Sizes, *, callbacks: bool) -> dict[str, Any]:
    """The backlog through one worker (pool of 2), with callbacks or with polling only."""
    tmp.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        emulator = stack.enter_context(running_emulator(task_duration=sizes.duration))
        emulator.configure(concurrency_limit=LIMIT)
        env = {"TRYON_MAX_IN_FLIGHT": str(LIMIT)}
        with _SCHEMA_LOCK:  # Alembic's `context` proxy is process-wide: one upgrade at a time
            deployment = stack.enter_context(deployment_on(tmp, emulator, env))
        if callbacks:
            stack.enter_context(callback_receiver(deployment, SECRET))
        deployment.start_worker(concurrency=2)
        store = deployment.store()
        stack.callback(store.dispose)
        started = store.now()
        job_ids = publish_jobs(deployment.settings, sizes.jobs, "cb" if callbacks else "poll")
        timeout = 10 * sizes.jobs * sizes.duration / LIMIT + 120
        records = wait_all_terminal(store, job_ids, timeout=timeout)
        assert {str(r.state) for r in records.values()} == {"succeeded"}, records
        finished = {j: unix_seconds(r.finished_at) or 0.0 for j, r in records.items()}
        return figures_of(emulator, sizes, started, finished)


def naive_client(sizes: Sizes) -> dict[str, Any]:
    """`LIMIT` threads; each creates a task (1303: waits 1 s) and polls it every second."""
    human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")
    finished: dict[str, float] = {}
    pending = [f"naive-{i:04d}" for i in range(sizes.jobs)]
    lock = threading.Lock()
    with running_emulator(task_duration=sizes.duration) as emulator:
        emulator.configure(concurrency_limit=LIMIT)

        def loop() -> None:
            with KlingClient(emulator.base_url, StaticKeyAuth(TEST_API_KEY)) as client:
                while True:
                    with lock:
                        if not pending:
                            return
                        job_id = pending.pop(0)
                    body = {"human_image": human, "cloth_image": cloth, "external_task_id": job_id}
                    task = _create_when_free(client, body)
                    while not task.is_terminal:
                        time.sleep(1.0)
                        task = client.get(task.task_id)
                    finished[job_id] = time.time()

        started = time.time()
        threads = [threading.Thread(target=loop) for _ in range(LIMIT)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return figures_of(emulator, sizes, started, finished)


def _create_when_free(client: KlingClient, body: dict[str, str]) -> KlingTask:
    """The naive client's create: on 1303 it waits a second and tries again."""
    while True:
        try:
            return client.create(body)
        except ConcurrencyLimitError:
            time.sleep(1.0)


def run(sizes: Sizes, out_dir: Path, tmp: Path) -> dict[str, Any]:
    """The three runs side by side; their figures against the ideal and the naive client."""
    results: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def side(name: str, job: Callable[[], dict[str, Any]]) -> threading.Thread:
        def target() -> None:
            try:
                results[name] = job()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=target, name=name)
        thread.start()
        return thread

    runs = [
        side("callbacks", lambda: service_backlog(tmp / "cb", sizes, callbacks=True)),
        side("polling", lambda: service_backlog(tmp / "poll", sizes, callbacks=False)),
        side("naive_client", lambda: naive_client(sizes)),
    ]
    for thread in runs:
        thread.join()
    if errors:
        raise errors[0]
    figures: dict[str, Any] = {
        "limit": LIMIT,
        "duration_s": sizes.duration,
        "ideal_makespan_s": round(sizes.jobs * sizes.duration / LIMIT, 1),
        "targets_with_callbacks": TARGETS,
        **{name: results[name] for name in ("callbacks", "polling", "naive_client")},
    }
    callbacks = results["callbacks"]
    figures["callbacks_meet_targets"] = (
        callbacks["utilization"] >= TARGETS["utilization"]
        and callbacks["answers_1303"] == TARGETS["answers_1303"]
        and callbacks["calls_per_job"] <= TARGETS["calls_per_job"]
        and callbacks["delay_p50_s"] < TARGETS["delay_p50_s"]
    )

    def draw(axes: Any) -> None:
        names = ["callbacks", "polling", "naive_client"]
        axes.bar(names, [results[n]["utilization"] for n in names], color=["g", "b", "grey"])
        axes.axhline(TARGETS["utilization"], color="r", linestyle="--", label="target 0.95")
        axes.set_ylim(0, 1.05)

    plot(
        out_dir / "utilization.png",
        draw,
        title=f"{sizes.jobs} jobs of {sizes.duration:g} s, limit {LIMIT}",
        xlabel="",
        ylabel="slot utilization",
    )
    write_result(out_dir, NAME, sizes, figures)
    return figures
