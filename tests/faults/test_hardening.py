"""A production week's faults: the job store away, a lagging API, a backlog of thousands,
configuration gone wrong, skewed clocks. Each test is its scenario and its counts at the
emulator: nothing lost, one task per job, no job failed or rejected for a fault that was
not its own.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from kombu import Connection

from harness import (
    SAMPLES,
    FaultRun,
    TcpProxy,
    cpu_starved,
    dead_letters,
    figures,
    free_port,
    publish_raw,
    rabbitmq_url,
    wait_until,
)
from kolors_tryon.config.celery import topology_for
from kolors_tryon.store import JobState, JobStore
from web_service import web_process

FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


@contextmanager
def store_behind_proxy(run: FaultRun) -> Iterator[tuple[TcpProxy, JobStore]]:
    """Point the deployment's job store at a proxy the test can cut; yields the proxy and
    a store that talks to the database directly (the test's own view)."""
    direct_url = run.deployment.env["TRYON_DATABASE_URL"]
    parts = urlsplit(direct_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    run.deployment.env["TRYON_DATABASE_URL"] = urlunsplit(parts._replace(netloc=netloc))
    direct = JobStore.from_url(direct_url)
    direct.create_schema()
    try:
        yield proxy, direct
    finally:
        proxy.close()
        direct.dispose()


def terminal(store: JobStore, job_ids: list[str]) -> int:
    return sum(1 for j in job_ids if (r := store.get(j)) is not None and r.terminal)


# ----------------------------------------------------------------- the store away ----
@pytest.mark.slow
def test_job_store_down_for_a_minute_loses_nothing(fault_run: FaultRun) -> None:
    """PostgreSQL unreachable for 60 s while 15 jobs arrive and 5 run: all end, one task each."""
    with store_behind_proxy(fault_run) as (proxy, direct):
        run = fault_run.given(max_in_flight=5, task_duration=3.0)
        first = run.publish(5, "inflight")
        wait_until(
            lambda: (
                direct.jobs.in_flight() == 5 and direct.jobs.count_by_state().get("queued", 0) == 0
            ),
            60,
            what="five jobs in flight",
        )
        proxy.cut()
        cut_at = time.monotonic()
        later = run.publish(15, "during")  # the broker is up: the jobs are taken in...
        time.sleep(60)  # ...and wait, as the store is away for a minute
        proxy.restore()
        records = run.wait_terminal(timeout=240)
        outage = time.monotonic() - cut_at
    assert run.states() == {"succeeded": 20}
    stats = run.assert_one_task_per_job()
    assert dead_letters(run.deployment.settings) == []
    assert all(r.error is None for r in records.values())
    figures(
        "store-outage",
        outage_s=round(outage),
        in_flight_at_cut=len(first),
        published_during=len(later),
        succeeded=20,
        tasks=stats["creates"],
        dead_letters=0,
    )


@pytest.mark.slow
def test_store_outage_on_a_starved_worker_loses_no_message(fault_run: FaultRun) -> None:
    """A worker on a quarter of a core: 5 jobs published just before the store goes away
    for 30 s and 15 during it all end succeeded, one task each (no message is acked
    without reaching a task, whatever the intake timers do on a slow event loop)."""
    with store_behind_proxy(fault_run) as (proxy, _direct):
        run = fault_run.given(max_in_flight=5, task_duration=1.0)
        worker = run.deployment.workers[0]
        with cpu_starved(worker.process.pid):
            run.publish(5, "before")
            time.sleep(0.3)  # the intake timers are armed, the first run may have begun
            proxy.cut()
            run.publish(15, "during")
            time.sleep(30)
            proxy.restore()
            run.wait_terminal(timeout=300)
    assert run.states() == {"succeeded": 20}
    run.assert_one_task_per_job()
    assert dead_letters(run.deployment.settings) == []


@pytest.mark.slow
def test_embedded_store_locked_for_30_s_loses_nothing(
    embedded_deployment: Any, emulator: Any
) -> None:
    """The embedded SQLite job store held by another writer for 30 s: every job ends once."""
    run = FaultRun(embedded_deployment, emulator).given(max_in_flight=3, task_duration=1.0)
    job_ids = run.publish(10, "locked")
    wait_until(lambda: terminal(run.store, job_ids) >= 2, 120, what="a first part of the run")
    database = run.deployment.settings.effective_database_url.removeprefix("sqlite:///")
    locker = sqlite3.connect(database, timeout=60, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    time.sleep(30)
    locker.execute("ROLLBACK")
    locker.close()
    run.wait_terminal(timeout=240)
    assert run.states() == {"succeeded": 10}
    stats = run.assert_one_task_per_job()
    figures("embedded-store-locked", lock_s=30, succeeded=10, tasks=stats["creates"])
    run.close()


# ----------------------------------------------------------------- a lagging API -----
@pytest.mark.slow
def test_lagging_index_and_late_creates_make_one_task_per_job(fault_run: FaultRun) -> None:
    """25% dropped answers, late creates, a 5 s index lag: one task per job, none refused."""
    run = fault_run.given(
        max_in_flight=5,
        task_duration=0.5,
        drop_rate=0.25,
        index_lag=5.0,
        late_create_rate=0.1,
        late_create_seconds=6.5,  # beyond the read timeout (5 s): the client gives up first
        seed=3,
    )
    run.publish(30, "lag")
    records = run.wait_terminal(timeout=420)
    stats = run.assert_one_task_per_job()
    assert run.states() == {"succeeded": 30}
    assert stats["answers_by_code"].get("dropped", 0) > 0 and stats["late_creates"] > 0
    with_task = {j for j, n in stats["tasks_by_external_id"].items() if n}
    refused = {j for j, r in records.items() if r.state in (JobState.FAILED, JobState.REJECTED)}
    assert not (with_task & refused)
    figures(
        "lagging-index",
        jobs=30,
        dropped_answers=stats["answers_by_code"].get("dropped", 0),
        late_creates=stats["late_creates"],
        create_requests=stats["create_requests"],
        tasks=stats["creates"],
        duplicate_tasks=sum(n - 1 for n in stats["tasks_by_external_id"].values()),
    )


# ----------------------------------------------------------------- dead letters ------
def test_dead_letter_queue_exists_from_the_start_and_catches_the_delivery_limit(
    fault_run: FaultRun,
) -> None:
    """Fresh namespace: a message whose consumers die at the delivery limit lands in dead."""
    run = fault_run.given(env={"TRYON_DELIVERY_LIMIT": "2"})
    settings = run.deployment.settings
    names = _broker_names()
    assert f"{settings.namespace}.dlx" in names["exchanges"]
    assert f"{settings.namespace}.dead" in names["queues"]
    run.deployment.stop_all()  # nobody takes the message but the test's dying consumers
    publish_raw(settings, json.dumps({"job_id": "poison-1", "human_image": "x"}))
    queue_name = topology_for(settings).jobs_queue_name
    for _ in range(settings.delivery_limit + 1):
        # Take the message and die without an answer, as a killed worker does.
        connection = Connection(rabbitmq_url())
        channel: Any = connection.channel()
        message = None
        deadline = time.monotonic() + 10
        while message is None and time.monotonic() < deadline:
            message = channel.basic_get(queue_name, no_ack=False)
        connection.close()  # unacked: RabbitMQ counts a delivery and hands it back
        if message is None:
            break
    parked: list[tuple[bytes, dict[str, Any]]] = []

    def landed() -> bool:
        parked.extend(dead_letters(settings))
        return bool(parked)

    wait_until(landed, 20, what="the message in the dead-letter queue")
    assert json.loads(parked[0][0])["job_id"] == "poison-1"


def _broker_names() -> dict[str, set[str]]:
    def listed(kind: str) -> set[str]:
        out = subprocess.run(
            ["rabbitmqctl", kind, "name", "--formatter", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return {item["name"] for item in json.loads(out.stdout)}

    return {"exchanges": listed("list_exchanges"), "queues": listed("list_queues")}


# ----------------------------------------------------------------- waiting -----------
@pytest.mark.slow
def test_many_1303_waits_then_a_dropped_connection_fail_no_job(fault_run: FaultRun) -> None:
    """20 jobs wait through many 1303s; the store's connections drop: none fails."""
    with store_behind_proxy(fault_run) as (proxy, direct):
        run = fault_run.given(max_in_flight=5, task_duration=0.5, create_error=1303)
        run.publish(20, "busy")
        wait_until(
            lambda: run.emulator.stats()["answers_by_code"].get("1303", 0) >= 12,
            90,
            what="each claimed job to wait several times",
        )
        proxy.cut()  # every connection dropped, and none for a few seconds
        time.sleep(4)
        proxy.restore()
        run.emulator.configure(create_error=None)
        run.wait_terminal(timeout=300)
        busy = run.emulator.stats()["answers_by_code"].get("1303", 0)
        assert direct.jobs.count_by_state() == {"succeeded": 20}
    assert run.states() == {"succeeded": 20}
    run.assert_one_task_per_job()
    assert dead_letters(run.deployment.settings) == []
    figures("waits-then-dropped-connection", jobs=20, answers_1303=busy, failed=0)


# ----------------------------------------------------------------- a backlog ---------
@pytest.mark.slow
@pytest.mark.serial
def test_backlog_of_5000_does_not_keep_slots_idle(fault_run: FaultRun, tmp_path: Path) -> None:
    """5,000 jobs published at once, limit 5: creates start within seconds, slots stay full."""
    port = free_port()
    fault_run.deployment.env.update(
        {"TRYON_PUBLIC_URL": f"http://127.0.0.1:{port}", "TRYON_CALLBACK_SECRET": "s" * 32}
    )
    with web_process(fault_run.deployment.env, tmp_path / "web.log", port):
        # Tasks of 3 s: on a loaded machine a finished task waits a second or two behind
        # intake runs before its end is recorded, which would idle a 1 s task's slot more
        # than half the time and say nothing about the backlog (measured at load 5-10).
        run = fault_run.given(max_in_flight=5, task_duration=3.0, concurrency_limit=5)
        figures("backlog-5000", **_backlog_run(run))


def _backlog_run(run: FaultRun) -> dict[str, Any]:
    started = time.monotonic()
    first_create: list[float] = []
    ours: list[int] = []  # slots we hold (store)
    theirs: list[int] = []  # tasks running at Kling (emulator)
    stop = threading.Event()

    recorded: list[int] = []  # jobs taken in so far, at each sample
    # The clock starts when intake records the first job: `tryon batch` checks every line
    # of the file before it publishes any, which takes a while on a loaded machine.
    first_recorded: list[float] = []

    def watch() -> None:
        while not stop.is_set():
            if not first_recorded and sum(run.store.jobs.count_by_state().values()) > 0:
                first_recorded.append(time.monotonic())
            stats = run.emulator.stats()
            if stats["creates"] and not first_create:
                first_create.append(time.monotonic() - (first_recorded or [started])[0])
            if first_create:
                theirs.append(stats["in_flight"])
                ours.append(run.store.jobs.in_flight())
                recorded.append(sum(run.store.jobs.count_by_state().values()))
                if recorded[-1] >= 5000:
                    return  # intake is done: the backlog is in the store
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    photos = stack_photos_server()
    batch = run.deployment.data_dir / "backlog.jsonl"
    batch.write_text(
        "".join(
            json.dumps(
                {
                    "job_id": f"backlog-{i:05d}",
                    "human_image": f"{photos}/human.jpg",
                    "cloth_image": f"{photos}/cloth-red.png",
                }
            )
            + "\n"
            for i in range(5000)
        )
    )
    # A producer is a process of its own (here the emulator shares the test's process).
    producer = subprocess.Popen(
        [sys.executable, "-m", "kolors_tryon.cli", "batch", str(batch)],
        env=run.deployment.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = time.monotonic()
    watcher.start()
    producer.wait(timeout=300)
    published = time.monotonic() - started
    watcher.join(timeout=120)  # until intake has taken in the whole backlog
    stop.set()
    intake_s = time.monotonic() - started
    counts = run.store.jobs.count_by_state()
    assert first_create and first_create[0] < 10, first_create
    assert counts.get("queued", 0) > 0  # measured while work was waiting
    assert recorded[0] < 2500  # the first create came long before intake was done
    assert len(ours) > 20  # ...and intake went on for a while (samples every 0.2 s)
    held = sum(1 for n in ours[5:] if n == 5) / len(ours[5:])
    running = sum(theirs[5:]) / len(theirs[5:])
    assert held >= 0.9, ours
    assert running >= 3.0, theirs
    stats = run.emulator.stats()
    return {
        "published_s": round(published, 1),
        "first_create_after_s": round(first_create[0], 2),
        "taken_in_at_first_create": recorded[0],
        "intake_of_5000_s": round(intake_s, 1),
        "share_of_samples_holding_all_5_slots": round(held, 3),
        "mean_tasks_running_at_kling": round(running, 2),
        "tasks": stats["creates"],
        "answers_1303": stats["answers_by_code"].get("1303", 0),
    }


def stack_photos_server() -> str:
    """The sample photos over HTTP on loopback (the emulator fetches image URLs)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SAMPLES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


# ----------------------------------------------------------------- configuration -----
@pytest.mark.slow
def test_token_refused_pauses_submissions_until_fixed(fault_run: FaultRun) -> None:
    """1004 on every create: submissions pause and say why; no job fails; then all go."""
    run = fault_run.given(max_in_flight=3, task_duration=0.3, create_error=1004)
    run.publish(8, "token")
    wait_until(lambda: run.store.account.current_pause() is not None, 30, what="the account pause")
    time.sleep(5)
    pause = run.store.account.current_pause()
    assert pause is not None and "clock" in pause.message
    counts = run.store.jobs.count_by_state()
    assert set(counts) <= {"queued", "submitting"}, counts
    run.emulator.configure(create_error=None)  # the operator fixed the clock
    run.wait_terminal(timeout=120)
    assert run.states() == {"succeeded": 8}
    run.assert_one_task_per_job()
    figures("token-refused", jobs=8, pause=pause.code, failed=0)


@pytest.mark.slow
def test_worker_clock_ahead_pauses_with_jwt_until_fixed(
    fault_run: FaultRun, tmp_path: Path
) -> None:
    """A worker 30 s fast mints tokens Kling refuses (nbf): a pause naming the clock."""
    _require_faketime()
    deployment = fault_run.deployment
    deployment.env.pop("TRYON_KLING_API_KEY")
    deployment.env["TRYON_KLING_ACCESS_KEY"] = "ak-test"
    deployment.env["TRYON_KLING_SECRET_KEY"] = "sk-secret-for-tests-0123456789abcdef"
    run = fault_run.given(workers=0, max_in_flight=3, task_duration=0.3)
    # Beyond the few seconds of skew the API tolerates (the emulator: 5 s).
    skewed = deployment.start_worker(name="fast", extra_env=_faketime("+30s"))
    run.publish(6, "skew")
    wait_until(lambda: run.store.account.current_pause() is not None, 60, what="the account pause")
    pause = run.store.account.current_pause()
    assert pause is not None and "clock" in pause.message, pause
    assert set(run.store.jobs.count_by_state()) <= {"queued", "submitting"}
    skewed.stop()
    deployment.start_worker(name="fixed")  # the machine's clock is right again
    run.wait_terminal(timeout=120)
    assert run.states() == {"succeeded": 6}
    run.assert_one_task_per_job()


@pytest.mark.slow
def test_wrong_base_url_pauses_submissions_until_fixed(fault_run: FaultRun) -> None:
    """A wrong reseller prefix: nothing is rejected, submissions pause, then all go."""
    deployment = fault_run.deployment
    right = deployment.env["TRYON_KLING_BASE_URL"]
    run = fault_run.given(
        workers=0,
        max_in_flight=3,
        task_duration=0.3,
        env={"TRYON_KLING_BASE_URL": right + "/kling"},
    )
    wrong = deployment.start_worker(name="wrong")
    run.publish(6, "prefix")
    wait_until(lambda: run.store.account.current_pause() is not None, 30, what="the account pause")
    pause = run.store.account.current_pause()
    assert pause is not None and "TRYON_KLING_BASE_URL" in pause.message
    time.sleep(3)
    assert set(run.store.jobs.count_by_state()) <= {"queued", "submitting"}
    wrong.stop()
    deployment.env["TRYON_KLING_BASE_URL"] = right
    deployment.start_worker(name="right")
    run.wait_terminal(timeout=120)
    assert run.states() == {"succeeded": 6}
    run.assert_one_task_per_job()
    figures("wrong-base-url", jobs=6, pause=pause.code, rejected=0, failed=0)


# ----------------------------------------------------------------- clocks ------------
@pytest.mark.slow
def test_worker_clock_five_minutes_fast_in_a_kill_run_makes_one_create_per_job(
    fault_run: FaultRun,
) -> None:
    """One worker 5 min fast, workers killed again and again: one create per job, all end."""
    _require_faketime()
    # Tasks of 2 s: 60 jobs on 6 slots last at least 20 s, long enough for the four kills
    # (at 3, 7, 11 and 15 s) the test asserts; with 0.5 s tasks a faster pipeline ended
    # the run after three.
    run = fault_run.given(
        workers=["honest"], max_in_flight=6, task_duration=2.0, slow_rate=0.5, slow_seconds=0.4
    )
    run.deployment.start_worker(name="fast", extra_env=_faketime("+300s"))
    run.publish(60, "clock")
    kills = 0
    next_kill = time.monotonic() + 3

    def killer() -> None:
        nonlocal kills, next_kill
        if kills >= 6 or time.monotonic() < next_kill:
            return
        kills += 1
        fast = kills % 2 == 0
        victim = next(w for w in reversed(run.deployment.workers) if w.alive())
        victim.kill()
        extra = _faketime("+300s") if fast else None
        run.deployment.start_worker(name=f"k{kills}", extra_env=extra)
        next_kill = time.monotonic() + 4

    run.wait_terminal(timeout=400, during=killer)
    assert run.states() == {"succeeded": 60}
    stats = run.assert_one_task_per_job()
    assert kills >= 4
    figures("clock-5-min-ahead", jobs=60, kills=kills, tasks=stats["creates"])


def _require_faketime() -> None:
    assert FAKETIME_LIB.is_file() and shutil.which("faketime"), (
        "libfaketime is missing: scripts/ensure-services.sh installs it (apt: faketime)"
    )


def _faketime(offset: str) -> dict[str, str]:
    """Environment that runs a process with its wall clock shifted by `offset`."""
    return {
        "LD_PRELOAD": str(FAKETIME_LIB),
        "FAKETIME": offset,
        # Only the wall clock is wrong on such a machine: timers and timeouts run on.
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_NO_CACHE": "1",
    }


# ----------------------------------------------------------------- lifecycle ---------
@pytest.mark.slow
def test_sigterm_mid_run_loses_nothing_and_creates_once(fault_run: FaultRun) -> None:
    """Workers stopped with SIGTERM again and again (warm shutdown): all end, one create each."""
    run = fault_run.given(
        workers=["t0", "t1"], max_in_flight=6, task_duration=0.5, slow_rate=0.5, slow_seconds=0.5
    )
    run.publish(120, "sigterm")
    stops = 0
    next_stop = time.monotonic() + 2

    def stopper() -> None:
        nonlocal stops, next_stop
        if stops >= 5 or time.monotonic() < next_stop:
            return
        stops += 1
        victim = next(w for w in run.deployment.workers if w.alive())
        victim.stop()  # SIGTERM: Celery finishes what runs and hands back what waits
        run.deployment.start_worker(name=f"t{stops + 1}")
        next_stop = time.monotonic() + 2

    run.wait_terminal(timeout=400, during=stopper)
    assert run.states() == {"succeeded": 120}
    stats = run.assert_one_task_per_job()
    assert stops >= 3
    figures("sigterm", jobs=120, stops=stops, tasks=stats["creates"], duplicates=0)
